// basalt's log viewer: renders only the lines on screen (virtual scrolling), keeps one byte
// per line (its level) to filter and fold at once without asking the server, fetches the
// text of the lines it shows by ranges, and follows a running job's log over Server-Sent
// Events. Endpoints: /jobs/ID/log/{meta,levels,lines,stream} (docs/web.md).
(function () {
  'use strict';
  var root = document.getElementById('log');
  if (!root || !window.fetch || !window.EventSource) return;
  root.hidden = false;
  var job = root.dataset.job;
  var base = '/jobs/' + job + '/log/';
  var LEVELS = ['debug', 'info', 'warning', 'error', 'exception', 'results', 'target', 'input', 'feedback', 'event', 'other'];
  var ROW = 18;                 // px: the CSS row height
  var MAX_HEIGHT = 8000000;     // px: taller spacers are scaled (browsers cap element heights)
  var scroller = document.getElementById('log-scroll');
  var spacer = document.getElementById('log-spacer');
  var rows = document.getElementById('log-rows');
  var status = document.getElementById('log-status');
  var follow = document.getElementById('log-follow');

  var levels = new Uint8Array(4096), count = 0;   // one level code per line
  var sections = [], startOf = new Map();         // line of a start: -> section index
  var folded = new Set();
  var mask = 0x7ff;
  var visible = new Int32Array(0), vcount = 0;   // the lines shown, in order
  var text = new Map();                          // line -> [dt, msg]
  var asked = new Set();
  var firstError = null, finished = root.dataset.finished === 'true';
  var selected = -1, rendered = false;
  var stats = window.basaltLog = { firstScreen: null, lines: 0, shownFirst: -1, shownLast: -1, loaded: false, ended: finished, refreshed: false };

  function setStatus(s) { status.textContent = s; }

  function grow(n) {
    if (n <= levels.length) return;
    var size = levels.length;
    while (size < n) size *= 2;
    var next = new Uint8Array(size);
    next.set(levels.subarray(0, count));
    levels = next;
  }

  function addLevels(bytes) {
    grow(count + bytes.length);
    levels.set(bytes, count);
    count += bytes.length;
    stats.lines = count;
  }

  function setSections(list) {
    sections = list;
    startOf = new Map();
    for (var i = 0; i < list.length; i++) startOf.set(list[i].start, i);
  }

  function sectionEnd(s) { return s.end === null || s.end === undefined ? count - 1 : s.end; }

  // the lines shown: those of the levels on, outside folded sections (their start shows)
  function recompute(keep) {
    var anchor = keep === undefined ? topLine() : keep;
    var hide = [];
    folded.forEach(function (i) { var s = sections[i]; if (s) hide.push([s.start + 1, sectionEnd(s)]); });
    hide.sort(function (a, b) { return a[0] - b[0]; });
    if (visible.length < count) visible = new Int32Array(Math.max(count, visible.length * 2));
    var k = 0, h = 0;
    for (var i = 0; i < count; i++) {
      while (h < hide.length && hide[h][1] < i) h++;
      if (h < hide.length && i >= hide[h][0]) { i = hide[h][1]; continue; }
      if (mask & (1 << levels[i])) visible[k++] = i;
    }
    vcount = k;
    var height = Math.min(vcount * ROW, MAX_HEIGHT);
    spacer.style.height = height + 'px';
    if (anchor >= 0) scrollToLine(anchor, false); else render();
  }

  function scaled() { return vcount * ROW > MAX_HEIGHT; }
  function perScreen() { return Math.ceil(scroller.clientHeight / ROW) + 1; }

  // the index (in `visible`) of the first row on screen
  function firstIndex() {
    if (!scaled()) return Math.floor(scroller.scrollTop / ROW);
    var maxTop = Math.max(1, scroller.scrollHeight - scroller.clientHeight);
    return Math.round(scroller.scrollTop / maxTop * Math.max(0, vcount - perScreen() + 1));
  }

  function topLine() { return rendered && vcount ? visible[Math.min(firstIndex(), vcount - 1)] : -1; }

  // the index of the first shown line >= n
  function indexOf(n) {
    var lo = 0, hi = vcount;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (visible[mid] < n) lo = mid + 1; else hi = mid; }
    return lo;
  }

  function scrollToIndex(idx) {
    idx = Math.max(0, Math.min(idx, vcount - 1));
    if (!scaled()) scroller.scrollTop = idx * ROW;
    else {
      var maxTop = scroller.scrollHeight - scroller.clientHeight;
      scroller.scrollTop = idx / Math.max(1, vcount - perScreen() + 1) * maxTop;
    }
    render();
  }

  function scrollToLine(n, select) {
    if (select) {
      // show it: its level on, the sections around it unfolded
      if (!(mask & (1 << levels[n]))) {
        mask |= 1 << levels[n];
        var box = root.querySelector('input[data-level="' + levels[n] + '"]');
        if (box) box.checked = true;
      }
      var changed = false;
      folded.forEach(function (i) { var s = sections[i]; if (s && n > s.start && n <= sectionEnd(s)) { folded.delete(i); changed = true; } });
      selected = n;
      recompute(n);
      return;
    }
    scrollToIndex(indexOf(n));
  }

  function rowFor(n) {
    var d = document.createElement('div');
    var lvl = LEVELS[levels[n]] || 'other';
    d.className = 'row lv-' + lvl + (n === selected ? ' sel' : '');
    d.id = 'L' + (n + 1);
    d.dataset.n = n;
    var a = document.createElement('a');
    a.className = 'n'; a.href = '#L' + (n + 1); a.textContent = n + 1;
    a.tabIndex = -1;
    d.appendChild(a);
    var si = startOf.get(n);
    if (si !== undefined) {
      var b = document.createElement('button');
      b.type = 'button'; b.className = 'fold';
      var isFolded = folded.has(si);
      b.textContent = isFolded ? '▸' : '▾';
      b.setAttribute('aria-expanded', isFolded ? 'false' : 'true');
      b.setAttribute('aria-label', (isFolded ? 'unfold ' : 'fold ') + sections[si].level + ' ' + sections[si].name);
      b.dataset.section = si;
      if (isFolded) d.classList.add('folded');
      d.appendChild(b);
    } else {
      var sp = document.createElement('span'); sp.className = 'nofold'; d.appendChild(sp);
    }
    var m = document.createElement('span');
    m.className = 'm';
    var t = text.get(n);
    if (t) { m.textContent = t[1]; m.title = t[0]; d.classList.add('loaded'); }
    else { m.textContent = '…'; d.classList.add('pending'); }
    d.appendChild(m);
    return d;
  }

  var frame = 0;
  function render() {
    frame = 0;
    rendered = true;
    var first = Math.min(firstIndex(), Math.max(0, vcount - 1));
    var n = Math.min(perScreen() + 2, vcount - first);
    var top = scaled() ? scroller.scrollTop : first * ROW;
    rows.style.top = top + 'px';
    // the rows never reach past the spacer: the scroll height stays the spacer's
    rows.style.height = Math.max(0, Math.min(n * ROW, spacer.offsetHeight - top)) + 'px';
    var frag = document.createDocumentFragment(), missing = [], all = true;
    for (var i = 0; i < n; i++) {
      var line = visible[first + i];
      frag.appendChild(rowFor(line));
      if (!text.has(line)) { all = false; if (!asked.has(line)) missing.push(line); }
    }
    rows.replaceChildren(frag);
    stats.shownFirst = n > 0 ? visible[first] : -1;
    stats.shownLast = n > 0 ? visible[first + n - 1] : -1;
    stats.loaded = all;
    if (all && stats.firstScreen === null && count > 0) stats.firstScreen = performance.now();
    if (missing.length) fetchLines(missing);
  }
  function schedule() { if (!frame) frame = requestAnimationFrame(render); }

  // asks for the lines in runs: one request per screen
  function fetchLines(list) {
    var ranges = [], a = list[0], b = list[0];
    for (var i = 1; i < list.length; i++) {
      if (list[i] === b + 1) b = list[i]; else { ranges.push(a + '-' + (b + 1)); a = b = list[i]; }
    }
    ranges.push(a + '-' + (b + 1));
    list.forEach(function (n) { asked.add(n); });
    fetch(base + 'lines?ranges=' + ranges.join(','), { credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error('lines: ' + r.status); return r.json(); })
      .then(function (j) {
        if (text.size > 200000) { text.clear(); }
        j.lines.forEach(function (l) { text.set(l.n, [l.dt, l.msg]); });
        list.forEach(function (n) { asked.delete(n); });
        schedule();
      })
      .catch(function (e) { list.forEach(function (n) { asked.delete(n); }); setStatus(String(e)); });
  }

  function atBottom() { return scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - ROW; }

  function toEnd() { scrollToIndex(vcount - 1); scroller.scrollTop = scroller.scrollHeight; render(); }

  function live(from) {
    var es = new EventSource(base + 'stream?from=' + from);
    es.addEventListener('lines', function (ev) {
      var d = JSON.parse(ev.data);
      if (d.start !== count) return;   // a reconnect resends from where it was: skip what we have
      var wasBottom = atBottom();
      for (var i = 0; i < d.lines.length; i++) text.set(d.start + i, d.lines[i]);
      addLevels(Uint8Array.from(d.levels));
      if (d.sections) setSections(d.sections);
      if (d.first_error !== null && d.first_error !== undefined) firstError = d.first_error;
      setStatus(count + ' lines, running');
      recompute(follow.checked || wasBottom ? -1 : topLine());
      if (follow.checked) toEnd();
    });
    es.addEventListener('end', function (ev) {
      var d = JSON.parse(ev.data);
      es.close();
      finished = true;
      stats.ended = true;
      setStatus(count + ' lines, ' + d.state + ' ' + d.health);
      var st = document.getElementById('job-state'), he = document.getElementById('job-health');
      if (st) st.textContent = d.state;
      var cancel = document.getElementById('cancel-form');
      if (cancel) cancel.hidden = true;
      if (he) he.textContent = d.health;
      refreshOutcome();
    });
    es.onerror = function () { if (!finished) setStatus(count + ' lines, reconnecting…'); };
  }

  // At the job's end: the page's facts, results, metadata and pipeline, as the server now
  // renders them, in place of the running job's (the log viewer stays as it is).
  function refreshOutcome() {
    fetch(location.pathname, { credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        ['job-facts', 'job-outcome'].forEach(function (id) {
          var now = document.getElementById(id), next = doc.getElementById(id);
          if (now && next) now.replaceWith(document.importNode(next, true));
        });
        stats.refreshed = true;
      })
      .catch(function (e) { setStatus(count + ' lines, ended (reload the page for the results: ' + e.message + ')'); });
  }

  function start() {
    setStatus('loading…');
    fetch(base + 'meta', { credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error('log: ' + r.status); return r.json(); })
      .then(function (meta) {
        finished = meta.finished;
        firstError = meta.first_error;
        setSections(meta.sections);
        return fetch(base + 'levels?from=0', { credentials: 'same-origin' })
          .then(function (r) { if (!r.ok) throw new Error('levels: ' + r.status); return r.arrayBuffer(); })
          .then(function (buf) {
            addLevels(new Uint8Array(buf));
            setStatus(count + ' lines' + (finished ? ', ' + meta.state + ' ' + meta.health : ', running'));
            var m = /^#L(\d+)$/.exec(location.hash);
            if (m && +m[1] >= 1 && +m[1] <= count) { recompute(0); scrollToLine(+m[1] - 1, true); }
            else { recompute(0); if (!finished && follow.checked) toEnd(); }
            if (!finished) live(count);
          });
      })
      .catch(function (e) { setStatus(String(e)); });
  }

  scroller.addEventListener('scroll', schedule, { passive: true });
  window.addEventListener('resize', schedule);
  root.querySelectorAll('input[data-level]').forEach(function (box) {
    box.addEventListener('change', function () {
      var bit = 1 << +box.dataset.level;
      mask = box.checked ? (mask | bit) : (mask & ~bit);
      recompute();
    });
  });
  rows.addEventListener('click', function (ev) {
    var b = ev.target.closest('button.fold');
    if (b) {
      var si = +b.dataset.section;
      if (folded.has(si)) folded.delete(si); else folded.add(si);
      var start = sections[si].start;
      recompute(start);
      var again = rows.querySelector('button.fold[data-section="' + si + '"]');
      if (again) again.focus();
      return;
    }
    var a = ev.target.closest('a.n');
    if (a) { ev.preventDefault(); var n = +a.parentNode.dataset.n; history.replaceState(null, '', '#L' + (n + 1)); selected = n; render(); }
  });
  window.addEventListener('hashchange', function () {
    var m = /^#L(\d+)$/.exec(location.hash);
    if (m && +m[1] >= 1 && +m[1] <= count) scrollToLine(+m[1] - 1, true);
  });
  function jumpToError() {
    if (firstError === null || firstError === undefined) { setStatus('no error in this log'); return; }
    history.replaceState(null, '', '#L' + (firstError + 1));
    scrollToLine(firstError, true);
  }
  document.getElementById('log-error').addEventListener('click', jumpToError);
  document.getElementById('log-fold-all').addEventListener('click', function () {
    for (var i = 0; i < sections.length; i++) folded.add(i);
    recompute();
  });
  document.getElementById('log-unfold-all').addEventListener('click', function () { folded.clear(); recompute(); });
  follow.addEventListener('change', function () { if (follow.checked) toEnd(); });
  scroller.addEventListener('keydown', function (ev) {
    if (ev.key === 'e') { jumpToError(); ev.preventDefault(); }
    else if (ev.key === 'End') { toEnd(); ev.preventDefault(); }
    else if (ev.key === 'Home') { scrollToIndex(0); ev.preventDefault(); }
    else if (ev.key === 'PageDown' || ev.key === 'PageUp') {
      var step = Math.max(1, perScreen() - 2) * (ev.key === 'PageDown' ? 1 : -1);
      scrollToIndex(firstIndex() + step); ev.preventDefault();
    }
  });
  start();
})();
