// strata dashboard: progressive enhancement only; every page works without it.
// An element with data-live="MS" is refetched every MS milliseconds and
// replaced by the same element of the fresh page, for as long as the fresh
// page still marks it live (the Jobs page stops marking it when nothing runs).
(function () {
  'use strict';
  function poll(id, every) {
    window.setTimeout(function () {
      fetch(window.location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (text) {
          var fresh = new DOMParser().parseFromString(text, 'text/html').getElementById(id);
          var current = document.getElementById(id);
          if (!fresh || !current) { return; }
          current.replaceWith(fresh);
          var next = fresh.getAttribute('data-live');
          if (next) { poll(id, parseInt(next, 10) || every); }
        })
        .catch(function () { poll(id, every * 2); });
    }, every);
  }
  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('[data-live][id]').forEach(function (el) {
      poll(el.id, parseInt(el.getAttribute('data-live'), 10) || 2000);
    });
  });
})();
