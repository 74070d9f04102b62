// pantry's dashboard script: live updates on pages that read whole without it
// (web/include/pantry/web/dashboard.h). Served from pantry's own origin, as the pages'
// Content-Security-Policy allows; it loads nothing from anywhere else.
//
// - #log[data-follow]: streams the job's new log lines (the coordinator's NDJSON follow, from the
//   seq the page stopped at) and appends them as the server renders them.
// - #live[data-refresh]: fetches the page again every data-refresh milliseconds and swaps in the
//   new #live, until a page comes back without data-refresh (its pipeline ended).
'use strict';

(function () {
  function stepMarker(step) {
    const s = document.createElement('span');
    s.className = 'step';
    s.textContent = (step === '' ? '(outside any step)' : 'step ' + step) + '\n';
    return s;
  }

  function appendEntry(log, entry) {
    const step = entry.step || '';
    if (log.dataset.step === undefined || log.dataset.step !== step) {
      log.appendChild(stepMarker(step));
      log.dataset.step = step;
    }
    const line = document.createElement('span');
    line.className = entry.stream || 'o';
    line.textContent = entry.text + '\n';
    log.appendChild(line);
  }

  function setStatus(text) {
    const status = document.getElementById('follow-status');
    if (status) status.textContent = text;
  }

  async function followLog(log) {
    const url = log.dataset.follow;
    setStatus('Following the log as the job runs…');
    let response;
    try {
      response = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
    } catch (e) {
      setStatus('Could not follow the log (' + e.message + '); refresh the page to see more.');
      return;
    }
    if (!response.ok || !response.body) {
      setStatus('Could not follow the log (HTTP ' + response.status + '); refresh the page.');
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let pending = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      const lines = pending.split('\n');
      pending = lines.pop();
      const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      for (const text of lines) {
        if (text === '') continue;
        appendEntry(log, JSON.parse(text));
      }
      const empty = document.getElementById('log-empty');
      if (empty && log.childElementCount > 0) empty.remove();
      if (atBottom) log.scrollTop = log.scrollHeight;
    }
    delete log.dataset.follow;
    await refreshHeading();
    log.dataset.ended = '1';
    setStatus('The job ended: this is its whole log.');
  }

  // The heading carries the job's state: once its log has ended, take it from the page again
  // (the job's final state, which the stream does not say).
  async function refreshHeading() {
    const heading = document.querySelector('h1');
    if (!heading) return;
    try {
      const response = await fetch(location.href, { credentials: 'same-origin', cache: 'no-store' });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), 'text/html');
      const fresh = page.querySelector('h1');
      if (fresh) heading.replaceChildren(...Array.from(fresh.childNodes, (n) => document.importNode(n, true)));
    } catch (e) {
      // The log is whole either way; the heading keeps the state the page was loaded with.
    }
  }

  function refreshLive(live) {
    const period = Number(live.dataset.refresh);
    if (!(period > 0)) return;
    setTimeout(async function () {
      let next = null;
      try {
        const response = await fetch(window.location.href, {
          credentials: 'same-origin',
          cache: 'no-store',
          headers: { Accept: 'text/html' },
        });
        if (response.ok) {
          const doc = new DOMParser().parseFromString(await response.text(), 'text/html');
          next = doc.getElementById('live');
        }
      } catch (e) {
        next = null;  // pantry restarting or unreachable: try again next period
      }
      const current = document.getElementById('live');
      if (next && current) {
        const adopted = document.importNode(next, true);
        current.replaceWith(adopted);
        refreshLive(adopted);
      } else if (current) {
        refreshLive(current);
      }
    }, period);
  }

  const log = document.getElementById('log');
  if (log && log.dataset.follow) followLog(log);
  const live = document.getElementById('live');
  if (live) refreshLive(live);
})();
