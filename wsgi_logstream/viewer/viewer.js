// The log page's enhancement: wsgi_logstream/viewer/__init__.py says what it does and why.
// Plain ES2017, no build step, no inline anything (the page's CSP forbids it). Log text only
// ever reaches the page through textContent, never innerHTML.
(() => {
  "use strict";
  const ESC = "\u241b";         // the server shows ESC as the visible ␛
  const SGR = /\u241b\[([0-9;]*)m/g;
  const TRACEBACK = "Traceback (most recent call last):";
  const LEVELS = {10: "d", 20: "i", 30: "w", 40: "e", 50: "c"};
  const RANKS = {d: 1, i: 2, w: 3, e: 4, c: 5};  // a record's level class, in order: the level filter's scale
  const PALETTE = ["#3b3b3b", "#c0262d", "#177245", "#a15c00", "#2563eb", "#9333ea", "#0e7490", "#9ca3af",
    "#6b7280", "#ef4444", "#22c55e", "#eab308", "#60a5fa", "#c084fc", "#22d3ee", "#e5e7eb"];
  const OVERSCAN = 30;          // lines rendered beyond each edge of the viewport
  const MAX_ROWS = 400;         // rows in the page at most, whatever the viewport's size
  const MAX_PX = 3e7;           // beyond this a browser cannot lay out one element: positions are scaled
  const SLICE_MS = 12;          // work done between two yields to the browser, in a long read or scan
  // A /regex/ in the filter box is bounded as the server's ?grep= is (wsgi_logstream/filters.py): a regular
  // expression has no timeout, and one that backtracks on a long line would freeze the tab.
  const MAX_SEARCHED = 1000;    // characters of each line a /regex/ searches: the start of a longer line
  const MAX_PATTERN = 200;      // the longest /regex/ accepted, in characters
  const MAX_REPEATS = 2;        // unbounded repetitions (*, +, {n,}) a /regex/ may hold
  const UNBOUNDED_CHOICES = 128; // what *, + or a wide {n,m} counts as among a /regex/'s choices
  const MAX_CHOICES = 4 * UNBOUNDED_CHOICES ** 2;  // ways to match at one place: a?{18} or a{0,9}{6} freeze a tab

  // A job's page (data-resumable on this script) reads the job as NDJSON; a plain stream's page
  // reads the HTML the server streams, since asking its URL again would run the operation again.
  const SCRIPT = document.currentScript;
  const JOB = Boolean(SCRIPT && SCRIPT.dataset.resumable === "1");

  document.documentElement.classList.add("js");  // the CSS switches to the scripted layout at once

  if (JOB) {
    // The document's own copy of the log would have the browser's parser build an element per
    // line (seconds of main thread for a long history): this script stands just before it, so
    // stop the document here and build the log from the NDJSON stream of the same job, which
    // also resumes by seq after a cut.
    window.stop();
    enhance(null);
  } else if (document.getElementById("log")) enhance(document.getElementById("log"));
  else {
    // Wait for <pre id="log"> to be parsed, then watch it.
    const waiting = new MutationObserver(() => {
      const log = document.getElementById("log");
      if (log) { waiting.disconnect(); enhance(log); }
    });
    waiting.observe(document.documentElement, {childList: true, subtree: true});
  }

  function make(tag, props) { return Object.assign(document.createElement(tag), props || {}); }

  // As the server's formats.visible(): control characters as visible symbols.
  function visible(text) {
    return String(text).replace(/\r\n?/g, "\n").replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, (c) => {
      const code = c.charCodeAt(0);
      return code < 0x20 ? String.fromCharCode(0x2400 + code) : code === 0x7f ? "\u2421" : "\\x" + code.toString(16);
    });
  }

  // As the server's carriage.fold(): a line rewritten with CR shown at its last state (only
  // the message folded when the line holds it, so the time and level in front of it stay).
  function lastState(line, message) {
    line = String(line);
    if (!line.includes("\r")) return line;
    const fold = (text) => text.split(/\r\n|\n/).map((part) =>
      part.includes("\r") ? part.replace(/[^\r]*\r+(?=[^\r\n])/g, "").replace(/\r+$/, "") : part).join("\n");
    const at = message && String(message).includes("\r") ? line.lastIndexOf(message) : -1;
    if (at >= 0) return line.slice(0, at) + fold(String(message)) + line.slice(at + String(message).length);
    return fold(line);
  }

  function enhance(feed) {
    const box = feed ? feed.parentNode : SCRIPT.parentNode;
    const main = box.closest("main");
    const state = document.getElementById("state");
    const resumable = JOB;
    const title = document.title;

    // A plain stream's parser goes on appending the server's lines to its <pre>: that becomes a
    // hidden feed, emptied as it fills. What the reader sees is #log, a window onto the whole log
    // that holds only the rows near the viewport. With JavaScript off the <pre> is the page.
    const view = make("div", {id: "log"});
    if (feed) {
      feed.id = "feed";
      feed.before(view);
    } else box.append(view);

    // -- the log, as data ------------------------------------------------------------------
    // One entry per record, drop note or progress report, in order; "kinds" is the element's class.
    const texts = [], kinds = [], seqs = [], times = [];  // times: epoch seconds (NaN: not known)
    const open = new Set();                       // entries whose traceback the reader unfolded
    // Sections: secs[s] = {head (its header entry), parent, depth, name, status ("" while running),
    // elapsed, user (the reader's choice: true open, false shut, null: the rule)}. owners[i] is the
    // innermost section entry i is in (-1: none); a header's owner is its parent section.
    const owners = [], secs = [], heads = new Map(), stack = [];
    const partialAt = new Map();                  // seq -> entry of a line still being rewritten (CR)
    const sections = new WeakMap();               // a plain page's <details class="sec"> -> its section
    let current = -1;                             // the section new entries go into
    let rows = new Int32Array(4096), nrows = 0;   // the entries shown (the filter applied), in order
    let tops = new Float64Array(4097);            // tops[k]: the line row k starts on; tops[nrows]: all lines
    let lastSeq = 0, tailNode = null, tailIndex = -1;
    let generation = 0, scanAt = -1;              // the filter's scan: which one, and how far (-1: none)
    let timed = false;                            // some entry has a time: #log has a column for times
    // The window (declared here, before the first harvest may draw): rows [first, first + els.length)
    // are in the page; lastScale is the scroller's scale at the last draw.
    let first = 0, els = [], lastScale = 1;
    let following = true, needle = "", done = false;
    // The filter: needle (a substring, lower case) or pattern (a RegExp, from a box written /.../), and
    // least (a RANKS value: records below it are not shown). hit: the entry the reader went to with
    // next/previous (-1: none); jump: scroll to it at the next draw.
    let pattern = null, least = 0, hit = -1, jump = false;
    let target = null;  // the lines the URL's #L<seq> or #L<from>-L<to> names: scrolled to once they are here
    aim();

    // The controls exist only with JavaScript: without it there would be nothing to click.
    const bar = make("progress", {id: "progress", hidden: true});
    const barText = make("span", {id: "progress-text"});
    const filter = make("input", {id: "filter", type: "search", placeholder: "filter lines, or /regex/",
      title: "show only the lines containing this text, or matching /a regular expression/ " +
        "(Enter: next match, Shift+Enter: previous)"});
    const level = make("select", {id: "level", title: "show only the lines at this level or above"});
    for (const [value, label] of [["0", "all levels"], ["2", "info and above"], ["3", "warning and above"],
      ["4", "error and above"]]) level.append(make("option", {value, textContent: label}));
    const prev = make("button", {id: "prev", type: "button", textContent: "\u25b2", title: "previous match (Shift+Enter)"});
    const next = make("button", {id: "next", type: "button", textContent: "\u25bc", title: "next match (Enter)"});
    const count = make("span", {id: "count"});  // "k of N", or why the filter is not applied
    count.setAttribute("role", "status");
    const follow = make("button", {id: "follow", type: "button", title: "follow new lines, or pause"});
    const zone = make("button", {id: "tz", type: "button"});
    const banner = make("span", {id: "banner", hidden: true});
    banner.setAttribute("role", "status");
    const tools = make("span", {id: "tools"});
    tools.append(bar, barText, filter, count, prev, next, level, follow, zone, downloadLink(make("a", {id: "download", textContent: "download"})));
    state.after(banner);
    state.parentNode.append(tools);

    // -- times: the reader's own time zone, or UTC ---------------------------------------
    let utc = false;
    try { utc = localStorage.getItem("wsgi-logstream:utc") === "1"; } catch (error) { /* storage refused: local */ }
    const started = document.querySelector("header time");
    const startedAt = started ? Date.parse(started.textContent.trim().replace(" ", "T")) : NaN;
    showZone();
    zone.addEventListener("click", () => {
      utc = !utc;
      try { localStorage.setItem("wsgi-logstream:utc", utc ? "1" : "0"); } catch (error) { /* this page only */ }
      showZone();
      clear();
      paint();
    });

    function showZone() {
      zone.textContent = utc ? "UTC" : "local time";
      zone.title = utc ? "times in UTC: show them in your time zone" : "times in your time zone: show them in UTC";
      if (started && Number.isFinite(startedAt)) {
        started.dateTime = new Date(startedAt).toISOString();
        started.textContent = `${day(startedAt)} ${clock(startedAt).slice(0, 8)} ${offset(startedAt)}`;
      }
    }
    function part(ms, local, utcName) { return new Date(ms)[utc ? utcName : local](); }
    function two(n) { return String(n).padStart(2, "0"); }
    function day(ms) {
      return `${part(ms, "getFullYear", "getUTCFullYear")}-${two(part(ms, "getMonth", "getUTCMonth") + 1)}-` +
        two(part(ms, "getDate", "getUTCDate"));
    }
    function clock(ms) {
      return `${two(part(ms, "getHours", "getUTCHours"))}:${two(part(ms, "getMinutes", "getUTCMinutes"))}:` +
        `${two(part(ms, "getSeconds", "getUTCSeconds"))}.${String(part(ms, "getMilliseconds", "getUTCMilliseconds")).padStart(3, "0")}`;
    }
    function offset(ms) {
      if (utc) return "UTC";
      const minutes = -new Date(ms).getTimezoneOffset();
      const a = Math.abs(minutes);
      return `${minutes < 0 ? "-" : "+"}${two(Math.floor(a / 60))}:${two(a % 60)}`;
    }

    // -- following the log as it grows -------------------------------------------------
    let lastTop = 0, frame = 0, lineHeight = 0;
    setFollowing(true);
    follow.addEventListener("click", () => { setFollowing(!following); if (following) paint(); });
    main.addEventListener("scroll", () => {
      const top = main.scrollTop;
      if (atBottom()) setFollowing(true);
      else if (top < lastTop - 2) setFollowing(false);  // the reader scrolled up
      lastTop = top;
      paint();
    }, {passive: true});
    // The wheel says "up" before the scroll lands: pause first, so a fast log cannot pull the view back.
    main.addEventListener("wheel", (event) => { if (event.deltaY < 0) setFollowing(false); }, {passive: true});
    window.addEventListener("resize", paint);
    filter.addEventListener("input", refilter);
    level.addEventListener("change", refilter);
    filter.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      go(event.shiftKey ? -1 : 1);
    });
    prev.addEventListener("click", () => go(-1));
    next.addEventListener("click", () => go(1));
    view.addEventListener("toggle", (event) => {
      const row = event.target.closest("#log > *");
      if (!row) return;
      const i = Number(row.dataset.entry);
      if (event.target.open === open.has(i)) return;  // drawn open, as it already was
      if (event.target.open) open.add(i); else open.delete(i);
      // Only this row's height changed: every row after it moves by the difference.
      const k = rowOf(i);
      if (k < 0) return;
      const delta = height(i) - (tops[k + 1] - tops[k]);
      for (let j = k + 1; j <= nrows; j++) tops[j] += delta;
      paint();
    }, true);
    // A click on a line's number links to it (shift: a range from the line linked before).
    view.addEventListener("click", (event) => {
      const row = event.target.closest("#log > [data-seq]");
      const sectionRow = event.target.closest("#log > .sec");
      if (sectionRow && !(row && event.clientX - row.getBoundingClientRect().left <= parseFloat(getComputedStyle(row).paddingLeft))) {
        toggle(Number(sectionRow.dataset.section));
        return;
      }
      if (!row || event.clientX - row.getBoundingClientRect().left > parseFloat(getComputedStyle(row).paddingLeft)) return;
      const seq = Number(row.dataset.seq);
      const from = event.shiftKey && target ? Math.min(target.from, seq) : seq;
      const to = event.shiftKey && target ? Math.max(target.to, seq) : seq;
      target = {from, to, pending: false};  // already in view: highlight, do not jump
      history.replaceState(null, "", from === to ? `#L${from}` : `#L${from}-L${to}`);
      clear();
      paint();
    });
    view.addEventListener("keydown", (event) => {
      const row = event.target.closest("#log > .sec");
      if (!row || (event.key !== "Enter" && event.key !== " ")) return;
      event.preventDefault();
      toggle(Number(row.dataset.section));
    });
    window.addEventListener("hashchange", () => { aim(); clear(); paint(); });

    // -- start: what is already parsed, then whatever comes -----------------------------
    new MutationObserver(checkEnd).observe(box, {childList: true});
    const observer = new MutationObserver(() => harvest(false));
    if (feed) {
      observer.observe(feed, {childList: true, subtree: true, characterData: true});
      harvest(false);
      checkEnd();
      if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", loaded);
      else loaded();
    } else read();

    function setFollowing(on) {
      following = on;
      follow.textContent = on ? "\u25cf following" : "\u275a\u275a paused";
      follow.setAttribute("aria-pressed", String(on));
    }
    function atBottom() { return main.scrollHeight - main.scrollTop - main.clientHeight < 4; }

    // -- taking what the parser adds -----------------------------------------------------
    // Every element of the feed but the last is complete: take it into the data and remove it.
    // The last may still be growing (the network splits a record anywhere): it is shown as it
    // is and taken again, whole, once the parser has moved past it.
    function harvest(final) {
      if (!feed) return;
      const got = {latest: null, added: false};
      current = -1;
      harvestIn(feed, final, got, -1);
      observer.takeRecords();  // our own removals: nothing to do for them
      if (got.latest) {
        const p = got.latest.querySelector("progress");
        const known = p && p.hasAttribute("value");
        showProgress(known ? p.value : null, known ? p.max : null, got.latest.textContent.trim());
      }
      if (got.added) paint();
    }

    // The children of `parent` (the feed, or a section's <details>) in order; `whole`: parent is complete.
    // Returns false if it stopped at a node it cannot take yet (a section whose name is still coming).
    function harvestIn(parent, whole, got, owner) {
      let node = parent.firstChild;
      while (node) {
        const next = node.nextSibling;
        const complete = next !== null || whole;
        current = owner;
        if (node.nodeType !== 1) {
          // Keep-alive comments and the newline after each would only be blank lines.
          if (complete || node.nodeType === 8 || !node.data.trim()) node.remove();
        } else if (node.classList.contains("pg")) {
          got.latest = node;
          if (complete) {
            add("pg", Number(node.dataset.seq) || 0, node.textContent.trim());
            node.remove();
          }
        } else if (node.tagName === "DETAILS" && node.classList.contains("sec")) {
          let s = sections.get(node);
          if (s === undefined) {
            const summary = node.querySelector("summary");
            if (!summary || (!summary.nextSibling && !complete)) return false;  // its name may be cut: wait
            s = openSection(summary.textContent, node.dataset.depth, Number(node.dataset.seq) || 0,
              when(node.dataset.t));
            sections.set(node, s);
            summary.remove();
            got.added = true;
          }
          if (!harvestIn(node, complete, got, s)) return false;
          if (!complete) return false;
          node.remove();  // a section cut before its end stays running, so open
        } else if (node.classList.contains("sec-end")) {
          if (owner >= 0 && !secs[owner].status) closeSection(owner, node.dataset.status, node.dataset.elapsed, Number(node.dataset.seq) || 0);
          node.remove();
          got.added = true;
        } else {
          const text = node.textContent;
          const seq = Number(node.dataset.seq) || 0;
          const partial = node.classList.contains("p");
          let i;
          if (node === tailNode) { i = tailIndex; update(i, text); }
          else if (seq && partialAt.has(seq)) { i = partialAt.get(seq); update(i, text); }  // its newer state
          else i = add(partial ? node.className.replace(/ p\b/, "") : node.className, seq, text, when(node.dataset.t), partial);
          if (partial) partialAt.set(seq, i); else if (seq) partialAt.delete(seq);
          tailIndex = i;
          tailNode = complete ? null : node;
          if (complete) node.remove();
          got.added = true;
        }
        node = next;
      }
      return true;
    }

    function when(value) {
      const t = value === undefined ? NaN : Number(value);
      return Number.isFinite(t) ? t : undefined;
    }

    // partial: a state of a line still being rewritten, which does not count as received for resuming.
    function add(kind, seq, text, time, partial) {
      const i = texts.length;
      texts.push(text);
      kinds.push(kind);
      seqs.push(seq);
      times.push(time === undefined ? NaN : time);
      owners.push(current);
      if (time !== undefined && !timed) { timed = true; view.classList.add("timed"); }  // a column for times
      if (seq > lastSeq && !partial) lastSeq = seq;
      if (kind !== "pg" && scanned(i) && shown(i)) push(i);
      return i;
    }

    // An entry's text changed (the growing tail of the feed, or a line rewritten with CR): its row
    // is drawn again, and taken out or put in if the filter now says otherwise.
    function update(i, text) {
      if (texts[i] === text) return;
      const before = height(i);
      texts[i] = text;
      if (!scanned(i)) return;
      const k = rowOf(i), want = kinds[i] !== "pg" && shown(i);
      if (k >= 0 && want && height(i) === before) { forget(i); return; }
      if (k < 0 && !want) return;
      const at = k >= 0 ? k : rowAfter(i);
      resplice(at, k >= 0 ? k + 1 : at, want ? [i] : []);
    }

    // -- sections ----------------------------------------------------------------------------
    function openSection(name, depth, seq, time) {
      const s = secs.length;
      const head = add("sec", seq, name, time);
      secs.push({head, parent: current, depth: Number(depth) || stack.length, name, status: "", elapsed: NaN,
        last: -1, user: null});
      heads.set(head, s);
      stack.push(s);
      current = s;
      if (rowOf(head) >= 0) forget(head);
      return s;
    }

    function closeSection(s, status, elapsed, seq) {
      if (s < 0 || s === undefined) return;
      const sec = secs[s];
      const at = stack.lastIndexOf(s);
      if (at >= 0) stack.length = at;
      current = stack.length ? stack[stack.length - 1] : -1;
      sec.status = status === "error" ? "error" : "ok";
      sec.elapsed = Number(elapsed);
      sec.last = texts.length - 1;
      if (seq > lastSeq) lastSeq = seq;
      if (folded(s)) refold(s); else forget(sec.head);
    }

    // A clean finished section is shut; a running one, or one with an error, is open; the reader's click wins.
    function folded(s) {
      const sec = secs[s];
      return sec.user !== null ? !sec.user : sec.status === "ok";
    }

    function hidden(i) {
      for (let s = owners[i]; s >= 0; s = secs[s].parent) if (folded(s)) return true;
      return false;
    }

    // A filter finds lines in shut sections too: with one, the folds do not hide.
    function shown(i) { return filtering() ? matches(i) : !hidden(i); }

    function toggle(s) {
      secs[s].user = folded(s);
      refold(s);
    }

    // The rows of section s's lines again (it was folded or unfolded): only that stretch of rows changes.
    function refold(s) {
      const sec = secs[s];
      if (!scanned(sec.head)) { rebuild(); return; }
      const last = sec.last >= 0 ? sec.last : texts.length - 1;
      const lo = rowAfter(sec.head), hi = rowAfter(last);
      const list = [];
      for (let i = sec.head + 1; i <= last && scanned(i); i++) if (kinds[i] !== "pg" && shown(i)) list.push(i);
      resplice(lo, hi, list);
      forget(sec.head);
    }

    // The first row whose entry comes after entry i.
    function rowAfter(i) {
      let lo = 0, hi = nrows;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (rows[mid] <= i) lo = mid + 1; else hi = mid; }
      return lo;
    }

    // Rows [lo, hi) become `list`; the rows after them keep their heights, moved by the difference.
    function resplice(lo, hi, list) {
      const tail = rows.slice(hi, nrows), tailTops = tops.slice(hi, nrows + 1);
      const count = lo + list.length + tail.length;
      while (count + 1 >= tops.length) grow();
      let top = tops[lo];
      for (let j = 0; j < list.length; j++) { rows[lo + j] = list[j]; tops[lo + j + 1] = top += height(list[j]); }
      const start = lo + list.length, delta = top - tailTops[0];
      rows.set(tail, start);
      for (let j = 1; j < tailTops.length; j++) tops[start + j] = tailTops[j] + delta;
      nrows = count;
      clear();
      paint();
    }

    function aim() {
      const m = /^#L(\d+)(?:-L?(\d+))?$/.exec(location.hash);
      if (!m) { target = null; return; }
      const a = Number(m[1]), b = Number(m[2] || m[1]);
      target = {from: Math.min(a, b), to: Math.max(a, b), pending: true};
    }

    // The display row of entry i (-1: not shown), and the first row whose seq is at least seq.
    function rowOf(i) {
      let lo = 0, hi = nrows;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (rows[mid] < i) lo = mid + 1; else hi = mid; }
      return lo < nrows && rows[lo] === i ? lo : -1;
    }

    function rowOfSeq(seq) {
      const seqAt = (k) => { while (k >= 0 && !seqs[rows[k]]) k -= 1; return k < 0 ? 0 : seqs[rows[k]]; };
      let lo = 0, hi = nrows;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (seqAt(mid) < seq) lo = mid + 1; else hi = mid; }
      return lo < nrows ? lo : -1;
    }

    // The filter's test: the level first (records only; a section's header has none, so a level hides it),
    // then the text. A pattern sees the entry without its final line break, so /5$/ means "ends with 5".
    function matches(i) {
      if (least && (kinds[i] === "sec" || (kinds[i].startsWith("r ") && (RANKS[kinds[i][2]] || 0) < least))) return false;
      if (pattern) {
        const text = texts[i];
        const line = text.endsWith("\n") ? text.slice(0, -1) : text;
        return pattern.test(line.length <= MAX_SEARCHED ? line : line.slice(0, MAX_SEARCHED));
      }
      return needle === "" || texts[i].toLowerCase().includes(needle);
    }
    function filtering() { return needle !== "" || pattern !== null || least > 0; }

    // Why the server's ?grep= would refuse this /regex/ source (filters.compile_grep), or "": too long, more
    // than MAX_REPEATS unbounded repetitions (a*a*a*b is O(n^4) per line), or a repetition of a group that
    // itself repeats or alternates ((a+)+, (a|aa)*: exponential). Read from the source's text, as a regex
    // parser would: escapes and [classes] are single atoms, (?: (?= (?! (?<= (?<! (?<name> open groups.
    // An alternation of single characters, (a|b), is a character class to the server's parser; here only
    // distinct plain characters count as one, since JavaScript tries each branch in turn: (a|a)* or (\d|1)*
    // is exponential in a browser. One the server factors into a class, (ab|ac), is refused here: the page
    // errs on the side of refusing. The product of what each repetition may take (a? two ways, a* or a wide
    // {n,m} UNBOUNDED_CHOICES) is at most MAX_CHOICES, as on the server.
    function refused(source) {
      if (source.length > MAX_PATTERN) return `longer than ${MAX_PATTERN} characters`;
      // Per open group: repeats (a repetition of at most >1 inside), single (every branch so far one
      // character), alternates, and width (the atoms of the branch being read).
      // char: the branch's one plain character so far (null: none, or not plain), chars: the branches' own.
      const open = () => ({repeats: false, single: true, alternates: false, width: 0, char: null, chars: new Set()});
      const groups = [open()];
      let atom = null, unbounded = 0, choices = 1;  // atom: what a quantifier may apply to (true: a repeating group)
      const branchEnds = (g) => {
        if (g.width !== 1 || g.char === null || g.chars.has(g.char)) g.single = false;
        else g.chars.add(g.char);
        g.width = 0;
        g.char = null;
      };
      for (let i = 0; i < source.length; i += 1) {
        const c = source[i];
        const group = groups[groups.length - 1];
        const quantifier = /^(?:[*+?]|\{(\d+)(,(\d*))?\})/.exec(source.slice(i));
        if (c === "\\") {
          i += 1;
          atom = false;
          group.width += 1;
          // An escaped punctuation character is itself; \d, \w, \1 ... may match what another branch does.
          group.char = /^[^A-Za-z0-9]$/.test(source[i] || "") ? source[i] : null;
        } else if (c === "[") {
          for (i += 1; i < source.length && source[i] !== "]"; i += 1) if (source[i] === "\\") i += 1;
          atom = false;
          group.width += 1;
          group.char = null;
        } else if (c === "(") {
          groups.push(open());
          const prefix = /^\?(?:[:=!]|<[=!]|<[^>]*>)/.exec(source.slice(i + 1));
          if (prefix) i += prefix[0].length;
          atom = null;
        } else if (c === ")") {
          if (groups.length === 1) { atom = false; continue; }
          const closed = groups.pop();
          branchEnds(closed);
          const repeats = closed.repeats || (closed.alternates && !closed.single);
          const outer = groups[groups.length - 1];
          outer.repeats = outer.repeats || repeats;
          outer.width += 2;  // a group is not one character
          outer.char = null;
          atom = repeats;
        } else if (c === "|") {
          group.alternates = true;
          branchEnds(group);
          atom = null;
        } else if (quantifier && atom !== null) {
          const [text, least, comma, most] = quantifier;
          const endless = text === "*" || text === "+" || (comma !== undefined && most === "");
          const many = endless || (text[0] === "{" && Number(comma !== undefined ? most : least) > 1);
          if (many && atom) return "a repeat of a group that repeats or alternates, like (a+)+";
          if (many) group.repeats = true;
          if (endless && ++unbounded > MAX_REPEATS) return `more than ${MAX_REPEATS} unbounded repeats (*, +, {n,})`;
          const range = text === "?" ? 2 : text[0] === "{" && !endless
            ? (comma === undefined ? 1 : Number(most) - Number(least) + 1) : UNBOUNDED_CHOICES;
          choices *= Math.min(Math.max(range, 1), UNBOUNDED_CHOICES);
          if (choices > MAX_CHOICES) return "too many optional or variable repeats (?, {n,m}, *, +) in a row";
          group.width += 2;  // a repeated character is not one character
          i += text.length - 1;
          if (source[i + 1] === "?") i += 1;  // lazy: the same repetition
          atom = null;
        } else {
          atom = false;
          group.width += 1;
          group.char = ".^$".includes(c) ? null : c.toLowerCase();  // . matches what any other branch does
        }
      }
      return "";
    }

    // The box or the level changed. A box written /.../flags is a regular expression; an invalid one, or
    // one the server's ?grep= would refuse as too costly, is said in the tools bar and filters nothing (the
    // level still applies).
    function refilter() {
      const value = filter.value.trim();
      const regex = /^\/(.+)\/([a-z]*)$/.exec(value);
      needle = "";
      pattern = null;
      filter.removeAttribute("aria-invalid");
      least = Number(level.value) || 0;
      if (regex) {
        try {
          pattern = new RegExp(regex[1], regex[2].replace(/[gy]/g, ""));  // no lastIndex to carry between lines
          const why = refused(regex[1]);
          if (why) {
            pattern = null;
            filter.setAttribute("aria-invalid", "true");
            count.textContent = `regex refused: ${why}`;
          }
        } catch (error) {
          filter.setAttribute("aria-invalid", "true");
          count.textContent = `bad regex: ${error.message}`.slice(0, 80);
        }
      } else needle = value.toLowerCase();
      hit = -1;
      rebuild();
    }

    // Next (+1) or previous (-1) of the lines the filter shows, over the whole log, wrapping around;
    // without a filter, nothing to go through.
    function go(step) {
      if (!filtering() || !nrows) return;
      let k;
      if (hit < 0) k = step > 0 ? 0 : nrows - 1;
      else if (step > 0) { k = rowAfter(hit); if (k >= nrows) k = 0; }
      else { k = rowAfter(hit - 1) - 1; if (k < 0) k = nrows - 1; }
      hit = rows[k];
      jump = true;
      setFollowing(false);
      clear();
      paint();
    }

    function counted() {
      if (filter.getAttribute("aria-invalid") === "true") return;  // the message stays until the box changes
      const k = hit >= 0 ? rowOf(hit) : -1;
      const n = filtering() ? `${nrows}${scanAt >= 0 ? "\u2026" : ""}` : "";
      count.textContent = !n ? "" : k >= 0 ? `${k + 1} of ${n}` : `${n} ${nrows === 1 ? "match" : "matches"}`;
    }

    function grow() {
      const more = new Float64Array(tops.length * 2);
      more.set(tops);
      tops = more;
      const wider = new Int32Array(rows.length * 2);
      wider.set(rows);
      rows = wider;
    }

    function push(i) {
      if (nrows + 1 >= tops.length) grow();
      rows[nrows] = i;
      tops[nrows + 1] = tops[nrows] + height(i);
      nrows += 1;
    }

    // Every row again (the filter changed). A million lines take longer than a frame, so the scan
    // yields every SLICE_MS, the matches so far on the page; lines arriving meanwhile are scanned too.
    async function rebuild() {
      const mine = ++generation;
      nrows = 0;
      clear();
      let budget = performance.now() + SLICE_MS;
      for (scanAt = 0; scanAt < texts.length; scanAt++) {
        if (kinds[scanAt] !== "pg" && shown(scanAt)) push(scanAt);
        if ((scanAt & 1023) === 0 && performance.now() > budget) {
          paint();
          await breathe();
          if (mine !== generation) return;  // a newer filter took over
          budget = performance.now() + SLICE_MS;
        }
      }
      scanAt = -1;
      paint();
    }
    function scanned(i) { return scanAt < 0 || i < scanAt; }

    // Lines an entry takes: one per line break but a final one; a folded traceback takes one.
    function height(i) {
      const text = texts[i];
      if (folds(text) && !open.has(i)) return 1;
      let n = 1;
      for (let at = text.indexOf("\n"); at >= 0 && at < text.length - 1; at = text.indexOf("\n", at + 1)) n += 1;
      return n;
    }

    // -- the window onto the log ---------------------------------------------------------
    // Rows [first, first + els.length) are in the page, each placed absolutely at its line (declared above).

    function paint() {
      if (!frame) frame = requestAnimationFrame(draw);
    }

    function clear() {
      for (const el of els) el.remove();
      els = [];
      first = 0;
    }

    // An entry's text changed: its row, if it is in the page, is drawn again.
    function forget(i) {
      for (let k = els.length - 1; k >= 0; k--) {
        if (Number(els[k].dataset.entry) !== i) continue;
        const fresh = draft(i);
        els[k].replaceWith(fresh);
        els[k] = fresh;
        return;
      }
    }

    function draw() {
      frame = 0;
      if (!lineHeight) lineHeight = measure();
      const total = tops[nrows] * lineHeight;
      const scale = total > MAX_PX ? total / MAX_PX : 1;   // px of the log per px of the scroller
      view.style.height = `${total / scale}px`;
      if (scale !== lastScale && !following) {
        // The log outgrew the scroller and the scale changed: keep the reader on the same line.
        main.scrollTop = view.offsetTop + ((main.scrollTop - view.offsetTop) * lastScale) / scale;
      }
      lastScale = scale;
      if (target && target.pending && (lastSeq >= target.from || done)) {
        // The linked line is here: put it a third of the way down, and stop following.
        target.pending = false;
        const k = rowOfSeq(target.from);
        if (k >= 0) {
          setFollowing(false);
          main.scrollTop = view.offsetTop + (tops[k] * lineHeight) / scale - main.clientHeight / 3;
        }
      }
      if (jump) {
        // Next/previous: the line the reader went to, a third of the way down.
        jump = false;
        const k = rowOf(hit);
        if (k >= 0) main.scrollTop = view.offsetTop + (tops[k] * lineHeight) / scale - main.clientHeight / 3;
      }
      if (following) main.scrollTop = main.scrollHeight;
      lastTop = main.scrollTop;
      counted();
      const top = (main.scrollTop - view.offsetTop) * scale;
      const from = Math.max(0, top / lineHeight - OVERSCAN);
      const to = (top + main.clientHeight) / lineHeight + OVERSCAN;
      let a = rowAt(from), b = a;
      while (b < nrows && tops[b] < to && b - a < MAX_ROWS) b += 1;
      // Keep the rows still in range, remove the others, add the new ones at either end.
      if (b <= first || a >= first + els.length) clear();
      while (els.length && first < a) { els.shift().remove(); first += 1; }
      while (els.length && first + els.length > b) els.pop().remove();
      if (!els.length) first = a;
      const before = [];
      for (let k = a; k < first; k++) before.push(draft(rows[k]));
      const after = [];
      for (let k = first + els.length; k < b; k++) after.push(draft(rows[k]));
      view.prepend(...before);
      view.append(...after);
      els = before.concat(els, after);
      first = a;
      // Where each row sits: near the viewport, lines keep their height; the scale applies to the whole.
      const origin = a < nrows ? tops[a] : 0;
      const base = (origin * lineHeight) / scale;
      for (let k = 0; k < els.length; k++) {
        const line = tops[a + k];
        els[k].style.top = `${base + (line - origin) * lineHeight}px`;
        els[k].style.height = `${(tops[a + k + 1] - line) * lineHeight}px`;
      }
      if (following) {
        main.scrollTop = main.scrollHeight;
        lastTop = main.scrollTop;
      }
    }

    // The row holding line `line`: the last k with tops[k] <= line.
    function rowAt(line) {
      let lo = 0, hi = nrows;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (tops[mid + 1] <= line) lo = mid + 1; else hi = mid;
      }
      return lo;
    }

    function measure() {
      const probe = make("div", {className: "r i", textContent: "x"});
      view.append(probe);
      const px = probe.getBoundingClientRect().height || 18;
      probe.remove();
      return px;
    }

    function draft(i) {
      const text = texts[i];
      if (kinds[i] === "sec") return header(i);
      const el = make("div", {className: kinds[i]});
      el.dataset.entry = String(i);
      if (seqs[i]) el.dataset.seq = String(seqs[i]);
      if (target && seqs[i] >= target.from && seqs[i] <= target.to) el.classList.add("hl");
      if (i === hit) el.classList.add("hit");
      if (Number.isFinite(times[i])) {
        const ms = times[i] * 1000;
        el.dataset.time = clock(ms);
        el.title = `${day(ms)} ${clock(ms)} ${offset(ms)}`;
      }
      if (kinds[i] === "drop") el.textContent = text;
      else if (text.includes(ESC + "[") || folds(text)) el.append(render(text, open.has(i)));
      else el.textContent = text;
      return el;
    }

    // A section's header row: its name, how it ended and how long it took; a click folds or unfolds it.
    function header(i) {
      const s = heads.get(i), sec = secs[s], shut = folded(s);
      const el = make("div", {className: `sec ${sec.status || "run"}${shut ? " shut" : ""}`, tabIndex: 0});
      el.dataset.entry = String(i);
      el.dataset.section = String(s);
      if (seqs[i]) el.dataset.seq = String(seqs[i]);
      if (target && seqs[i] >= target.from && seqs[i] <= target.to) el.classList.add("hl");
      if (i === hit) el.classList.add("hit");
      el.setAttribute("role", "button");
      el.setAttribute("aria-expanded", String(!shut));
      const name = make("span", {className: "sec-name", textContent: `${shut ? "\u25b8" : "\u25be"} ${texts[i]}`});
      name.style.paddingLeft = `${2 * Math.max(0, sec.depth - 1)}ch`;
      const how = sec.status === "" ? "running\u2026"
        : `${sec.status === "ok" ? "\u2714 ok" : "\u2716 error"}` + (Number.isFinite(sec.elapsed) ? ` \u00b7 ${duration(sec.elapsed)}` : "");
      el.append(name, make("span", {className: "sec-how", textContent: `  ${how}`}));
      return el;
    }

    function duration(seconds) {
      if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)}s`;
      const m = Math.floor(seconds / 60);
      return m < 60 ? `${m}m ${two(Math.round(seconds % 60))}s` : `${Math.floor(m / 60)}h ${two(m % 60)}m`;
    }

    // A record of several lines with a traceback in it (a line break before its last character).
    function folds(text) {
      const cut = text.indexOf("\n");
      return cut >= 0 && cut < text.length - 1 && text.includes(TRACEBACK);
    }

    function render(text, unfolded) {
      if (!folds(text)) return colour(text);
      const cut = text.indexOf("\n");
      let head = text.slice(0, cut);
      const rest = text.slice(cut + 1);
      // A bare traceback's first line says nothing: name the exception, its last line.
      if (head.startsWith("Traceback")) head += " \u2026 " + rest.replace(/\s+$/, "").split("\n").pop();
      const details = make("details", {open: unfolded});
      const summary = make("summary");
      summary.append(colour(head));
      details.append(summary, colour(rest));
      return details;
    }

    function colour(text) {
      const out = document.createDocumentFragment();
      let style = {}, at = 0, m;
      SGR.lastIndex = 0;
      while ((m = SGR.exec(text)) !== null) {
        piece(out, text.slice(at, m.index), style);
        style = sgr(style, m[1]);
        at = SGR.lastIndex;
      }
      piece(out, text.slice(at), style);
      return out;
    }

    function piece(out, text, style) {
      if (!text) return;
      const span = make("span", {textContent: text});  // text, never markup
      Object.assign(span.style, style);                 // the CSSOM, which the CSP allows
      out.append(span);
    }

    // Select Graphic Rendition: the colour and weight codes; the others are ignored.
    function sgr(style, params) {
      const codes = params === "" ? [0] : params.split(";").map(Number);
      let next = Object.assign({}, style);
      for (let i = 0; i < codes.length; i++) {
        const c = codes[i];
        if (c === 0) next = {};
        else if (c === 1) next.fontWeight = "bold";
        else if (c === 2) next.opacity = "0.7";
        else if (c === 3) next.fontStyle = "italic";
        else if (c === 4) next.textDecoration = "underline";
        else if (c === 22) { delete next.fontWeight; delete next.opacity; }
        else if (c === 23) delete next.fontStyle;
        else if (c === 24) delete next.textDecoration;
        else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) next.color = PALETTE[(c % 10) + (c >= 90 ? 8 : 0)];
        else if ((c >= 40 && c <= 47) || (c >= 100 && c <= 107)) next.backgroundColor = PALETTE[(c % 10) + (c >= 100 ? 8 : 0)];
        else if (c === 39) delete next.color;
        else if (c === 49) delete next.backgroundColor;
        else if (c === 38 || c === 48) {
          const key = c === 38 ? "color" : "backgroundColor";
          if (codes[i + 1] === 5) { next[key] = xterm(codes[i + 2]); i += 2; }
          else if (codes[i + 1] === 2) { next[key] = `rgb(${codes.slice(i + 2, i + 5).join(",")})`; i += 4; }
        }
      }
      return next;
    }

    function xterm(n) {
      if (!(n >= 0 && n < 256)) return "";
      if (n < 16) return PALETTE[n];
      if (n >= 232) { const g = 8 + 10 * (n - 232); return `rgb(${g},${g},${g})`; }
      n -= 16;
      return `rgb(${[Math.floor(n / 36), Math.floor(n / 6) % 6, n % 6].map((v) => (v ? 55 + 40 * v : 0)).join(",")})`;
    }

    function showProgress(value, max, text) {
      if (value !== null) { bar.max = max; bar.value = value; } else bar.removeAttribute("value");
      bar.hidden = false;
      barText.textContent = text;
      if (!done) document.title = (value !== null ? Math.round((100 * value) / max) + "% \u00b7 " : "") + title;
    }

    // -- download --------------------------------------------------------------------------
    function downloadLink(a) {
      a.download = (title.replace(/[^\w.-]+/g, "-") || "log") + ".txt";
      if (resumable) {
        a.href = location.pathname + "?format=text";  // a job replays its history: nothing runs again
      } else {
        // A plain stream's URL would run the operation again: save what the page received.
        a.href = "#";
        a.addEventListener("click", () => {
          if (a.href.startsWith("blob:")) URL.revokeObjectURL(a.href);
          a.href = URL.createObjectURL(new Blob([pageText()], {type: "text/plain;charset=utf-8"}));
        });
      }
      return a;
    }

    function pageText() {
      harvest(false);
      const parts = [];
      for (let i = 0; i < texts.length; i++) {
        parts.push(kinds[i] === "pg" ? `-- progress ${texts[i]} --\n` : kinds[i] === "sec" ? `-- section start: ${texts[i]} --\n` : texts[i]);
      }
      const end = document.getElementById("end");
      if (end) parts.push(end.textContent + "\n");
      return parts.join("");
    }

    // -- the end, or the lack of it --------------------------------------------------------
    function checkEnd() {
      const end = document.getElementById("end");
      if (!end || done) return;
      done = true;
      harvest(true);
      const status = end.dataset.status || "";
      banner.textContent = end.textContent;
      banner.className = status;
      banner.hidden = false;
      document.title = (status === "ok" ? "\u2714 " : "\u2716 ") + title;
      // Drawn now, not on the next frame: when the banner says it ended, the last lines are there.
      if (frame) cancelAnimationFrame(frame);
      draw();
    }

    function lost(message) {
      banner.textContent = message;
      banner.className = "lost";
      banner.hidden = false;
      state.textContent = "disconnected";
    }

    function loaded() {
      harvest(true);
      if (!document.getElementById("end")) lost("the stream was cut before the end: this log is incomplete");
    }

    // -- a job: its NDJSON stream, resumed by seq until the end ------------------------------
    async function read() {
      let attempt = 0;
      while (!done) {
        let failure = "";
        try {
          // From before the oldest line still being rewritten, so its final state comes; what we have is skipped.
          let since = lastSeq;
          for (const seq of partialAt.keys()) since = Math.min(since, seq - 1);
          const response = await fetch(`${location.pathname}?format=ndjson&since=${since}`,
            {headers: {Accept: "application/x-ndjson"}, cache: "no-store"});
          if (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429) {
            lost(`the server answered ${response.status}: ${(await response.text()).trim()}`);
            return;
          }
          if (!response.ok) throw new Error(`the server answered ${response.status}`);
          state.textContent = "running";
          if (banner.className === "lost") banner.hidden = true;
          const reader = response.body.getReader();
          const decoder = new TextDecoder();
          let rest = "", budget = performance.now() + SLICE_MS;
          for (;;) {
            const chunk = await reader.read();
            if (chunk.done) break;
            const text = rest + decoder.decode(chunk.value, {stream: true});
            let at = 0;
            for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", at)) {
              take(JSON.parse(text.slice(at, nl)));
              at = nl + 1;
              attempt = 0;
              // Long histories arrive in big chunks: let the page breathe every SLICE_MS.
              if (performance.now() > budget) { await breathe(); budget = performance.now() + SLICE_MS; }
            }
            rest = text.slice(at);  // a line the network has not finished: it comes whole, or again
            paint();
          }
          if (!done) failure = "the stream ended before the log did";
        } catch (error) {
          failure = "lost the connection to the server";
        }
        if (done) return;
        // Back off: 0.5 s, 1, 2, 4 ... at most 30 s between attempts, and say so on the page.
        attempt += 1;
        const wait = Math.min(30, 0.5 * 2 ** (attempt - 1));
        state.textContent = "reconnecting\u2026";
        banner.textContent = `${failure}: trying again in ${wait < 1 ? wait : Math.round(wait)} s (attempt ${attempt})`;
        banner.className = "lost";
        banner.hidden = false;
        await new Promise((ok) => setTimeout(ok, wait * 1000));
      }
    }

    function breathe() {
      // A macrotask, and not a throttled timer: a background tab keeps reading at full speed.
      return new Promise((ok) => {
        const channel = new MessageChannel();
        channel.port1.onmessage = () => { channel.port1.close(); ok(); };
        channel.port2.postMessage(0);
      });
    }

    function take(entry) {
      if (entry.event === "start") {
        const when = document.querySelector("header time");
        if (when && !when.textContent) when.textContent = new Date(entry.time * 1000).toLocaleString();
      } else if (entry.event === "log") {
        const text = visible(lastState(entry.line, entry.message)) + "\n";
        if (partialAt.has(entry.seq)) {
          // A newer state of a line being rewritten with CR (or its final one): it replaces the line.
          update(partialAt.get(entry.seq), text);
          if (!entry.partial) partialAt.delete(entry.seq);
          return;
        }
        if (entry.seq <= lastSeq) return;  // a reconnect may send again what we have: skip it by seq
        const n = entry.levelno;
        const level = LEVELS[n] || (n < 20 ? "d" : n < 30 ? "i" : n < 40 ? "w" : "e");
        const i = add("r " + level, entry.seq, text, entry.time, entry.partial);
        if (entry.partial) partialAt.set(entry.seq, i);
      } else if (entry.event === "section") {
        if (entry.seq <= lastSeq) return;
        if (entry.action === "start") openSection(visible(entry.name), entry.depth, entry.seq, entry.time);
        else closeSection(stack.length ? stack[stack.length - 1] : -1, entry.status, entry.elapsed, entry.seq);
      } else if (entry.event === "progress") {
        if (entry.seq <= lastSeq) return;
        let text = String(entry.done);
        if (entry.total) text += `/${entry.total} (${Math.round((100 * entry.done) / entry.total)}%)`;
        if (entry.message) text += " " + visible(entry.message);
        add("pg", entry.seq, text, entry.time);
        showProgress(entry.total ? entry.done : null, entry.total, text);
      } else if (entry.event === "dropped") {
        add("drop", 0, `-- ${entry.count} line${entry.count === 1 ? "" : "s"} dropped: not kept for this page --\n`);
      } else if (entry.event === "end") {
        if (entry.traceback) add("r e tb", 0, visible(entry.traceback));
        const error = entry.error ? ": " + visible(entry.error) : "";
        const lines = entry.records === 1 ? "1 line" : `${entry.records} lines`;
        const end = make("p", {id: "end", className: "end " + entry.status,
          textContent: `${entry.status === "ok" ? "\u2714" : "\u2716"} ${entry.status}${error} ` +
            `(after ${Number(entry.elapsed).toFixed(2)}s: ${lines}, ${entry.dropped} dropped)`});
        end.dataset.status = entry.status;
        box.append(end);
        checkEnd();
      }
    }
  }
})();
