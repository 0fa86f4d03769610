//! Which pooled connections a request holds, so that a request abandoned
//! mid-query (it timed out, or its client went away) stops its server-side
//! statement instead of leaving it waiting on a lock.
//!
//! Dropping a tokio-postgres future does not stop the statement: the backend
//! runs (or waits in the lock queue) on, and the connection goes back to the
//! pool with it still running. So every checkout inside a request is
//! recorded (pool hooks, which run inside `pool.get()` and so inside the
//! request's task); when the request is abandoned, each connection it still
//! owns is marked tainted and sent a cancel request. A tainted connection is
//! never handed out again: the hooks refuse it and the pool drops it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use deadpool_postgres::{ClientWrapper, HookError, StatementCache};
use tokio_postgres::CancelToken;

use crate::db::tls::Connector;

/// What is known about one pooled connection.
struct Entry {
    /// Tells a dead connection from a new one that reuses its address.
    alive: Weak<StatementCache>,
    cancel: CancelToken,
    /// Cancel requests go over TLS like the session (sslmode=require
    /// refuses a plain one).
    tls: Connector,
    /// The request that checked it out last (0: none).
    owner: u64,
    tainted: bool,
}

static CONNECTIONS: LazyLock<Mutex<HashMap<usize, Entry>>> = LazyLock::new(Mutex::default);
static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

tokio::task_local! {
    static REQUEST: Scope;
}

/// The connections one request has checked out.
#[derive(Clone)]
pub struct Scope {
    id: u64,
    held: Arc<Mutex<Vec<usize>>>,
}

impl Scope {
    pub fn new() -> Scope {
        Scope {
            id: NEXT_REQUEST.fetch_add(1, Ordering::Relaxed),
            held: Arc::default(),
        }
    }

    /// Runs `f` as this request: checkouts inside it are recorded.
    pub async fn run<F: std::future::Future>(self, f: F) -> F::Output {
        REQUEST.scope(self, f).await
    }

    /// The request will not finish: taint and cancel every connection it
    /// still owns (one another request has checked out since is not its own
    /// any more, and is left alone).
    pub fn abandon(&self) {
        let held = std::mem::take(&mut *self.held.lock().expect("scope poisoned"));
        let mut cancels = Vec::new();
        {
            let mut conns = CONNECTIONS.lock().expect("connection registry poisoned");
            for key in held {
                if let Some(e) = conns.get_mut(&key).filter(|e| e.owner == self.id) {
                    e.tainted = true;
                    cancels.push((e.cancel.clone(), e.tls.clone()));
                }
            }
        }
        if cancels.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tracing::info!(
            connections = cancels.len(),
            "request abandoned; cancelling its statements"
        );
        rt.spawn(async move {
            for (c, tls) in cancels {
                if let Err(e) = cancel(&c, tls).await {
                    tracing::warn!(error = %e, "could not cancel an abandoned statement");
                }
            }
        });
    }
}

impl Default for Scope {
    fn default() -> Self {
        Scope::new()
    }
}

fn key(w: &ClientWrapper) -> usize {
    Arc::as_ptr(&w.statement_cache) as usize
}

/// Pool hook after a connection is created or recycled for a checkout:
/// refuses a tainted one, records the owner.
pub fn checkout(w: &mut ClientWrapper, tls: &Connector) -> Result<(), HookError> {
    let key = key(w);
    let request = REQUEST.try_with(|s| s.clone()).ok();
    let mut conns = CONNECTIONS.lock().expect("connection registry poisoned");
    let same = conns.get(&key).is_some_and(|e| {
        e.alive
            .upgrade()
            .is_some_and(|a| Arc::ptr_eq(&a, &w.statement_cache))
    });
    if !same {
        // New connections are rare (at most the pool size at a time), so
        // this is the place to forget dead ones.
        conns.retain(|_, e| e.alive.strong_count() > 0);
        conns.insert(
            key,
            Entry {
                alive: Arc::downgrade(&w.statement_cache),
                cancel: w.cancel_token(),
                tls: tls.clone(),
                owner: 0,
                tainted: false,
            },
        );
    }
    let entry = conns.get_mut(&key).expect("just inserted");
    if entry.tainted {
        return Err(HookError::message(
            "its last request was abandoned mid-statement",
        ));
    }
    entry.owner = request.as_ref().map_or(0, |s| s.id);
    drop(conns);
    if let Some(s) = request {
        s.held.lock().expect("scope poisoned").push(key);
    }
    Ok(())
}

/// Sends a cancel request for `token`'s statement, over TLS when the session
/// uses it.
pub async fn cancel(token: &CancelToken, tls: Connector) -> Result<(), tokio_postgres::Error> {
    token.cancel_query(tls).await
}

/// The cancel token of a pooled connection and the connector its cancel
/// request needs.
pub fn canceller(w: &ClientWrapper) -> Option<(CancelToken, Connector)> {
    let conns = CONNECTIONS.lock().expect("connection registry poisoned");
    conns
        .get(&key(w))
        .map(|e| (e.cancel.clone(), e.tls.clone()))
}

/// Pool hook before a connection is recycled: a tainted one is dropped
/// rather than queued behind its cancelled statement.
pub fn before_recycle(w: &mut ClientWrapper) -> Result<(), HookError> {
    let conns = CONNECTIONS.lock().expect("connection registry poisoned");
    match conns.get(&key(w)) {
        Some(e) if e.tainted => Err(HookError::message(
            "its last request was abandoned mid-statement",
        )),
        _ => Ok(()),
    }
}

/// Takes a connection out of its request's hands (a job that outlives the
/// request keeps it): abandoning the request no longer cancels it.
pub fn release(w: &ClientWrapper) {
    let mut conns = CONNECTIONS.lock().expect("connection registry poisoned");
    if let Some(e) = conns.get_mut(&key(w)) {
        e.owner = 0;
    }
}
