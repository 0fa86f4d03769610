// End-to-end test of the dashboard in Debian's Chromium, driven by
// playwright-core (never a downloaded browser). Started by tests/dashboard.rs
// with the server's URL and tokens in the environment; prints one JSON
// summary line and exits 1 when any check failed.
//
// Env: STRATA_URL, STRATA_ADMIN_TOKEN, STRATA_READER_TOKEN, STRATA_CHROMIUM,
//      STRATA_SCREENSHOTS (folder), STRATA_PROFILE (a fresh folder for profiles).
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
// Evaluated through the DevTools protocol rather than added as a <script>:
// the dashboard's CSP (rightly) refuses inline script, and the test must
// not weaken it (bypassCSP) to inject its checker.
const axeSource = readFileSync(require.resolve('axe-core'), 'utf8');
const base = process.env.STRATA_URL;
const shots = process.env.STRATA_SCREENSHOTS;
const failures = [];
const summary = { failures, axe: {}, screenshots: [], statuses: {} };

function check(ok, what) {
  if (!ok) failures.push(what);
  return ok;
}

const PAGES = ['/', '/partitions', '/indexes', '/queries', '/live', '/jobs', '/conversion',
  '/events', '/archives', '/seals', '/rollups'];

async function axe(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => await window.axe.run(document));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  summary.axe[name] = bad.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
  check(bad.length === 0, `axe on ${name}: ${summary.axe[name].join('; ')}`);
}

async function shot(page, name) {
  if (!shots) return;
  const path = join(shots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  summary.screenshots.push(path);
}

async function login(context, token) {
  const page = await context.newPage();
  await page.goto(`${base}/login`);
  await page.getByLabel('API token').fill(token);
  const [response] = await Promise.all([
    page.waitForNavigation(),
    page.getByRole('button', { name: 'Log in' }).click(),
  ]);
  return { page, response };
}

// A POST from inside the page, with the page's own cookie (as a forger with
// a stolen session would send it).
async function post(page, path, fields) {
  return await page.evaluate(async ([path, fields]) => {
    const r = await fetch(path, { method: 'POST', body: new URLSearchParams(fields), redirect: 'manual' });
    return r.status;
  }, [path, fields]);
}

const profile = mkdtempSync(join(process.env.STRATA_PROFILE || '/tmp', 'chromium-'));
const browser = await chromium.launch({
  executablePath: process.env.STRATA_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--disk-cache-dir=${profile}/cache`],
});

try {
  // --- A bad token is refused, and no session is opened.
  {
    const context = await browser.newContext();
    const { page, response } = await login(context, 'strata_' + '0'.repeat(64));
    summary.statuses.bad_token = response.status();
    check(response.status() === 401, `bad token answered ${response.status()}`);
    check(await page.getByText('That token is not valid.').isVisible(), 'bad token message shown');
    const cookies = await context.cookies();
    check(!cookies.some((c) => c.name === 'strata_session'), 'no cookie for a bad token');
    await shot(page, 'login-refused');
    await axe(page, 'login');
    const r = await page.goto(`${base}/`);
    check(new URL(r.url()).pathname === '/login', 'without a session / sends to /login');
    await context.close();
  }

  // --- Admin.
  const admin = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const { page } = await login(admin, process.env.STRATA_ADMIN_TOKEN);
  summary.admin_login = { url: page.url(), alert: await page.locator('[role=alert]').allTextContents() };
  const cookie = (await admin.cookies()).find((c) => c.name === 'strata_session');
  summary.cookie = cookie && { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite, path: cookie.path };
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', 'session cookie HttpOnly, SameSite=Strict');
  summary.partition_count = Number(await page.getByTestId('partition-count').first().textContent());
  const warning = page.getByTestId('default-warning').first();
  summary.default_warning = (await warning.isVisible()) ? (await warning.textContent()).trim() : null;
  check(summary.default_warning !== null, 'default-partition warning shown');

  // Keyboard: the first Tab reaches the skip link, which moves focus to main.
  await page.goto(`${base}/`);
  await page.keyboard.press('Tab');
  summary.first_tab = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
  check(summary.first_tab === 'Skip to content', `first Tab focuses ${summary.first_tab}`);
  await page.keyboard.press('Enter');
  check(await page.evaluate(() => document.activeElement && document.activeElement.id === 'main'), 'skip link moves focus to main');

  // A row a writer stored with markup in it is shown as text.
  await page.goto(`${base}/events?user_id=7`);
  summary.hostile_rows_shown = await page.getByText('<img src=x id=xss-action>').isVisible();
  check(summary.hostile_rows_shown, 'the hostile action is shown as text');
  summary.hostile_elements = await page.locator('#xss-action, #xss-details').count();
  check(summary.hostile_elements === 0, 'no element from stored data');

  // Bad input is a page with a clear message, not a 500.
  let r = await page.goto(`${base}/events?from=yesterday-ish`);
  summary.statuses.bad_date = r.status();
  check(r.status() === 400 && (await page.getByRole('alert').textContent()).includes('from'), 'bad date is a 400 page');
  await shot(page, 'error-bad-date');
  r = await page.goto(`${base}/jobs/confirm?action=vacuum&table=no_such_table`);
  summary.statuses.unknown_table = r.status();
  check(r.status() === 400 && (await page.getByRole('alert').textContent()).includes('no_such_table'), 'unknown table is a 400 page');

  // A POST without the CSRF token is refused.
  summary.statuses.csrf_less = await post(page, '/jobs/start', { action: 'vacuum', table: 'audit_logs' });
  check(summary.statuses.csrf_less === 403, `CSRF-less POST answered ${summary.statuses.csrf_less}`);

  // Start a vacuum through the confirmation page and watch it finish.
  await page.goto(`${base}/jobs`);
  await page.getByLabel('Action').selectOption('vacuum_analyze');
  await page.getByLabel('Table or partition').fill('audit_logs');
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Review…' }).click()]);
  summary.confirm_text = (await page.locator('main p').first().textContent()).trim();
  check(summary.confirm_text.includes('VACUUM (ANALYZE)'), 'confirmation says what will run');
  await axe(page, 'confirm');
  await shot(page, 'confirm');
  await Promise.all([page.waitForURL(/\/jobs\?started=\d+/), page.getByTestId('confirm-start').click()]);
  const id = new URL(page.url()).searchParams.get('started');
  summary.vacuum_job_id = Number(id);
  const state = page.locator(`tr[data-job-id="${id}"] td.state`)
    .filter({ hasText: /succeeded|failed/ });
  await state.first().waitFor({ timeout: 60000 });
  summary.vacuum_state = (await state.first().textContent()).trim();
  check(summary.vacuum_state === 'succeeded', `vacuum job ended ${summary.vacuum_state}`);
  await shot(page, 'jobs-after-vacuum');

  // A second start of a running job is the API's 409, shown as such. The
  // Rust side holds a lock on STRATA_BUSY_PARTITION once the vacuum is done
  // and then creates STRATA_LOCKED, so the first ANALYZE stays running.
  {
    const deadline = Date.now() + 30000;
    while (!existsSync(process.env.STRATA_LOCKED) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    check(existsSync(process.env.STRATA_LOCKED), 'the test holds the partition lock');
    const busy = process.env.STRATA_BUSY_PARTITION;
    const confirm = `${base}/jobs/confirm?action=analyze&table=${busy}`;
    await page.goto(confirm);
    await Promise.all([page.waitForURL(/\/jobs\?started=\d+/), page.getByTestId('confirm-start').click()]);
    await page.goto(confirm);
    const [second] = await Promise.all([page.waitForNavigation(), page.getByTestId('confirm-start').click()]);
    summary.statuses.second_start = second.status();
    const alert = (await page.getByRole('alert').textContent()) || '';
    summary.conflict_message = alert.trim();
    check(second.status() === 409 && alert.includes('already running'), `second start: ${second.status()} ${alert}`);
    await shot(page, 'jobs-409');
  }

  // Every page, after the VACUUM (ANALYZE) gave the planner its row counts.
  for (const path of PAGES) {
    const r = await page.goto(`${base}${path}`);
    const name = path === '/' ? 'overview' : path.slice(1);
    summary.statuses[name] = r.status();
    check(r.status() === 200, `${path} answered ${r.status()}`);
    const csp = r.headers()['content-security-policy'] || '';
    check(csp.includes("default-src 'self'") && !csp.includes('unsafe-inline'), `${path} CSP: ${csp}`);
    await axe(page, name);
    await shot(page, name);
  }


  // --- Reader.
  const reader = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const rp = (await login(reader, process.env.STRATA_READER_TOKEN)).page;
  let controls = 0;
  for (const path of ['/', '/jobs', '/partitions']) {
    await rp.goto(`${base}${path}`);
    controls += await rp.locator('a[href^="/jobs/confirm"], form[action="/jobs/confirm"], form[action="/jobs/start"]').count();
  }
  summary.reader_admin_controls = controls;
  check(controls === 0, `reader sees ${controls} admin controls`);
  await shot(rp, 'jobs-reader');
  const csrf = await rp.locator('input[name="csrf"]').first().getAttribute('value');
  summary.statuses.reader_forged = await post(rp, '/jobs/start', { action: 'vacuum', table: 'audit_logs', csrf });
  check(summary.statuses.reader_forged === 403, `reader's forged POST answered ${summary.statuses.reader_forged}`);
  r = await rp.goto(`${base}/jobs/confirm?action=vacuum&table=audit_logs`);
  summary.statuses.reader_confirm = r.status();
  check(r.status() === 403, `reader's confirm page answered ${r.status()}`);

  // Logout ends the session.
  await page.goto(`${base}/`);
  await Promise.all([page.waitForURL(/\/login$/), page.getByRole('button', { name: 'Log out' }).click()]);
  r = await page.goto(`${base}/jobs`);
  summary.after_logout = new URL(r.url()).pathname;
  check(summary.after_logout === '/login', 'after logout pages send to /login');
} catch (e) {
  failures.push(`exception: ${e && e.stack || e}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
process.exit(failures.length === 0 ? 0 : 1);
