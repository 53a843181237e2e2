// The log page's enhancement: wsgi_logstream/viewer/__init__.py says what it does and why.
// Plain ES2017, no build step. It must never put log text into innerHTML.
(() => {
  "use strict";
  const CAP = 5000;             // log lines kept in the page; older ones are removed
  const KEEP_CHARS = 8e6;       // plain stream: text of removed lines kept for the download
  const ESC = "\u241b";         // the server shows ESC as the visible ␛
  const SGR = /\u241b\[([0-9;]*)m/g;
  const TRACEBACK = "Traceback (most recent call last):";
  const LEVELS = {10: "d", 20: "i", 30: "w", 40: "e", 50: "c"};
  const PALETTE = ["#3b3b3b", "#c0262d", "#177245", "#a15c00", "#2563eb", "#9333ea", "#0e7490", "#9ca3af",
    "#6b7280", "#ef4444", "#22c55e", "#eab308", "#60a5fa", "#c084fc", "#22d3ee", "#e5e7eb"];

  document.documentElement.classList.add("js");  // the CSS switches to the scripted layout at once

  // This runs in <head>: wait for <pre id="log"> to be parsed, then watch it.
  if (document.getElementById("log")) enhance(document.getElementById("log"));
  else {
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

  function enhance(log) {
    const main = log.closest("main");
    const state = document.getElementById("state");
    const resumable = document.body.dataset.resumable === "1";
    const title = document.title;
    const raw = new WeakMap();  // record whose text we replaced with rendered nodes -> the text as sent
    const earlier = [];         // plain stream: [text, lines] removed by the cap, for the download
    let earlierSize = 0, forgotten = 0, shown = 0, hidden = 0, lastSeq = 0;
    let following = true, needle = "", source = null, done = false;

    // The controls exist only with JavaScript: without it there would be nothing to click.
    const bar = make("progress", {id: "progress", hidden: true});
    const barText = make("span", {id: "progress-text"});
    const filter = make("input", {id: "filter", type: "search", placeholder: "filter lines",
      title: "show only the lines containing this text"});
    const follow = make("button", {id: "follow", type: "button", title: "follow new lines, or pause"});
    const banner = make("span", {id: "banner", hidden: true});
    banner.setAttribute("role", "status");
    const tools = make("span", {id: "tools"});
    tools.append(bar, barText, filter, follow, downloadLink(make("a", {id: "download", textContent: "download"})));
    state.after(banner);
    state.parentNode.append(tools);
    const note = make("p", {id: "capnote", hidden: true});
    const noteText = document.createTextNode("");
    note.append(noteText, downloadLink(make("a", {textContent: "download the full log"})));
    log.before(note);

    // -- following the log as it grows -------------------------------------------------
    // At most one scroll per frame: each scroll makes the browser lay the page out.
    let lastTop = 0, frame = 0;
    setFollowing(true);
    follow.addEventListener("click", () => { setFollowing(!following); if (following) toBottom(); });
    main.addEventListener("scroll", () => {
      const top = main.scrollTop;
      if (atBottom()) setFollowing(true);
      else if (top < lastTop - 2) setFollowing(false);  // the reader scrolled up
      lastTop = top;
    }, {passive: true});
    // The wheel says "up" before the scroll lands: pause first, so a fast log cannot pull the view back.
    main.addEventListener("wheel", (event) => { if (event.deltaY < 0) setFollowing(false); }, {passive: true});
    window.addEventListener("resize", () => { if (following) toBottom(); });
    filter.addEventListener("input", () => {
      needle = filter.value.trim().toLowerCase();
      for (const node of Array.from(log.children)) if (isRecord(node)) match(node);
      if (following) toBottom();
    });

    // -- start: what is already parsed, then whatever comes -----------------------------
    const observer = new MutationObserver(changes);
    observer.observe(log, {childList: true, subtree: true, characterData: true});
    new MutationObserver(checkEnd).observe(log.parentNode, {childList: true});
    changes([{target: log, addedNodes: Array.from(log.childNodes)}]);
    checkEnd();
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", loaded);
    else loaded();

    function setFollowing(on) {
      following = on;
      // Following, the view is put at the bottom by us; paused, the browser keeps the lines
      // the reader is looking at in place while older ones are removed above them.
      main.style.overflowAnchor = on ? "none" : "auto";
      follow.textContent = on ? "\u25cf following" : "\u275a\u275a paused";
      follow.setAttribute("aria-pressed", String(on));
    }
    function atBottom() { return main.scrollHeight - main.scrollTop - main.clientHeight < 4; }
    function toBottom() {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        if (!following) return;
        main.scrollTop = main.scrollHeight;
        lastTop = main.scrollTop;
      });
    }

    // -- what the parser (or the resumed stream) adds --------------------------------------
    // Elements are counted as they come, the cap applied, and only then are the
    // survivors rendered: in a burst of thousands of lines most never need to be.
    function changes(records) {
      const dirty = new Set();
      for (const change of records) {
        if (change.target === log) change.addedNodes.forEach((node) => { if (added(node)) dirty.add(node); });
        else {
          // More text arrived inside an element the parser had not finished.
          let node = change.target;
          while (node && node.parentNode !== log) node = node.parentNode;
          if (node && node.nodeType === 1) dirty.add(node);
        }
      }
      trim();
      let latest = null;
      for (const node of dirty) {
        if (node.classList.contains("pg")) latest = node;  // even if the cap removed it
        else if (isRecord(node) && node.parentNode === log) settle(node);
      }
      if (latest) showProgress(latest);
      if (following) toBottom();
      observer.takeRecords();  // our own changes: nothing more to do for them
    }

    function isRecord(node) { return node.nodeType === 1 && node.classList.contains("r"); }

    function added(node) {
      if (node.nodeType !== 1) {
        // Keep-alive comments and the newline after each would only show as blank lines.
        if (node.nodeType === 8 || (node.nodeType === 3 && !node.data.trim())) node.remove();
        return false;
      }
      lastSeq = Math.max(lastSeq, Number(node.getAttribute("data-seq")) || 0);
      if (isRecord(node)) shown += 1;
      return true;
    }

    // Render a record from its text. Our rendered children are all elements, so any
    // text node in a record is text the parser appended since: render again with it.
    function settle(record) {
      let text = raw.get(record) || "";
      let fresh = false;
      for (let child = record.firstChild; child; child = child.nextSibling) {
        if (child.nodeType === 3) { text += child.data; fresh = true; }
      }
      if (fresh && (raw.has(record) || text.includes(ESC + "[") || folds(text))) {
        raw.set(record, text);
        record.textContent = "";
        record.append(render(text));
      }
      if (needle) match(record);
    }

    function textOf(record) { return raw.has(record) ? raw.get(record) : record.textContent; }

    // A record of several lines with a traceback in it (a line break before its last character).
    function folds(text) {
      const cut = text.indexOf("\n");
      return cut >= 0 && cut < text.length - 1 && text.includes(TRACEBACK);
    }

    function render(text) {
      if (!folds(text)) return colour(text);
      const cut = text.indexOf("\n");
      let first = text.slice(0, cut);
      const rest = text.slice(cut + 1);
      // A bare traceback's first line says nothing: name the exception, its last line.
      if (first.startsWith("Traceback")) first += " \u2026 " + rest.replace(/\s+$/, "").split("\n").pop();
      const details = make("details");
      const summary = make("summary");
      summary.append(colour(first));
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
      Object.assign(span.style, style);
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

    function match(record) {
      record.classList.toggle("x", needle !== "" && !record.textContent.toLowerCase().includes(needle));
    }

    function showProgress(label) {
      const p = label.querySelector("progress");
      const known = p && p.hasAttribute("value");
      if (known) { bar.max = p.max; bar.value = p.value; } else bar.removeAttribute("value");
      bar.hidden = false;
      barText.textContent = label.textContent.trim();
      if (!done) document.title = (known ? Math.round((100 * p.value) / p.max) + "% \u00b7 " : "") + title;
    }

    // -- the cap on lines in the page ------------------------------------------------------
    function trim() {
      if (shown <= CAP) return;
      // Find the first node to keep, then remove everything before it in one go.
      let excess = shown - CAP, keep = log.firstChild, text = "";
      while (excess > 0) {
        if (isRecord(keep)) excess -= 1;
        if (!resumable) text += asText(keep);
        keep = keep.nextSibling;
      }
      const range = document.createRange();
      range.setStart(log, 0);
      range.setEndBefore(keep);
      range.deleteContents();
      hidden += shown - CAP;
      if (!resumable) {
        earlier.push([text, shown - CAP]);
        earlierSize += text.length;
        while (earlierSize > KEEP_CHARS && earlier.length > 1) {
          const oldest = earlier.shift();
          earlierSize -= oldest[0].length;
          forgotten += oldest[1];
        }
      }
      shown = CAP;
      noteText.data = `${hidden} earlier line${hidden === 1 ? "" : "s"} hidden; `;
      note.hidden = false;
    }

    function asText(node) {
      if (node.nodeType !== 1) return "";
      if (node.classList.contains("pg")) return `-- progress ${node.textContent.trim()} --\n`;
      return isRecord(node) ? textOf(node) : node.textContent;
    }

    // -- download --------------------------------------------------------------------------
    function downloadLink(a) {
      a.download = (title.replace(/[^\w.-]+/g, "-") || "log") + ".txt";
      if (resumable) {
        a.href = location.pathname + "?format=text";  // a job replays its history: nothing runs again
      } else {
        // A plain stream's URL would run the operation again: save what the page holds.
        a.href = "#";
        a.addEventListener("click", () => {
          if (a.href.startsWith("blob:")) URL.revokeObjectURL(a.href);
          a.href = URL.createObjectURL(new Blob([pageText()], {type: "text/plain;charset=utf-8"}));
        });
      }
      return a;
    }

    function pageText() {
      let text = forgotten ? `-- ${forgotten} earlier lines were not kept --\n` : "";
      text += earlier.map((chunk) => chunk[0]).join("");
      for (const node of Array.from(log.childNodes)) text += asText(node);
      const end = document.getElementById("end");
      return end ? text + end.textContent + "\n" : text;
    }

    // -- the end, or the lack of it --------------------------------------------------------
    function checkEnd() {
      const end = document.getElementById("end");
      if (!end || done) return;
      done = true;
      if (source) source.close();
      const status = end.dataset.status || "";
      banner.textContent = end.textContent;
      banner.className = status;
      banner.hidden = false;
      document.title = (status === "ok" ? "\u2714 " : "\u2716 ") + title;
      if (following) toBottom();
    }

    function lost(message) {
      banner.textContent = message;
      banner.className = "lost";
      banner.hidden = false;
      state.textContent = "disconnected";
    }

    function loaded() {
      changes(observer.takeRecords());
      if (document.getElementById("end")) return;
      if (resumable) resume();
      else lost("the stream was cut before the end: this log is incomplete");
    }

    // A job's HTML stream was cut: carry on over SSE from the last line we have.
    function resume() {
      const last = log.lastElementChild;
      if (last && isRecord(last) && !last.dataset.seq) {
        last.remove();  // the summary's traceback, cut off: the end event brings it again
        shown -= 1;
      } else if (last && isRecord(last) && !textOf(last).endsWith("\n")) {
        lastSeq = Number(last.dataset.seq) - 1;  // a line cut in the middle: ask for it again, whole
        last.remove();
        shown -= 1;
      }
      state.textContent = "reconnecting\u2026";
      source = new EventSource(`${location.pathname}?format=sse&detail=1&since=${lastSeq}`);
      source.onopen = () => { state.textContent = "running"; };
      // EventSource reconnects by itself; whatever a reconnect sends again is skipped by seq.
      source.onmessage = (event) => {
        const entry = JSON.parse(event.data);
        if (entry.seq <= lastSeq) return;
        const n = entry.levelno;
        const level = LEVELS[n] || (n < 20 ? "d" : n < 30 ? "i" : n < 40 ? "w" : "e");
        const span = make("span", {className: "r " + level, textContent: visible(entry.line) + "\n"});
        span.dataset.seq = entry.seq;
        log.append(span);
        lastSeq = entry.seq;
      };
      source.addEventListener("progress", (event) => {
        const entry = JSON.parse(event.data);
        if (entry.seq <= lastSeq) return;
        const label = make("label", {className: "pg"});
        label.dataset.seq = entry.seq;
        const p = make("progress");
        let text = String(entry.done);
        if (entry.total) {
          p.max = entry.total;
          p.value = entry.done;
          text += `/${entry.total} (${Math.round((100 * entry.done) / entry.total)}%)`;
        }
        label.append(p, " " + text + (entry.message ? " " + visible(entry.message) : ""));
        log.append(label);
        lastSeq = entry.seq;
      });
      source.addEventListener("dropped", (event) => {
        const count = JSON.parse(event.data).count;
        log.append(make("span", {className: "drop", textContent: `-- ${count} lines dropped: this page fell behind --\n`}));
      });
      source.addEventListener("end", (event) => {
        source.close();
        const summary = JSON.parse(event.data);
        if (summary.traceback) log.append(make("span", {className: "r e tb", textContent: visible(summary.traceback)}));
        const error = summary.error ? ": " + visible(summary.error) : "";
        const lines = summary.records === 1 ? "1 line" : `${summary.records} lines`;
        const end = make("p", {id: "end", className: "end " + summary.status,
          textContent: `${summary.status === "ok" ? "\u2714" : "\u2716"} ${summary.status}${error} ` +
            `(after ${Number(summary.elapsed).toFixed(2)}s: ${lines}, ${summary.dropped} dropped)`});
        end.dataset.status = summary.status;
        log.parentNode.append(end);
      });
      source.onerror = () => {
        if (source.readyState === EventSource.CLOSED && !done) lost("lost the connection to the server: this log is incomplete");
        else if (!done) state.textContent = "reconnecting\u2026";
      };
    }
  }
})();
