// A small markdown renderer that builds DOM nodes and never parses HTML.
//
// Model output is untrusted: every piece of text becomes a text node (textContent), so markup in
// it shows as text and can never create an element. Only a fixed set of elements is produced:
// p, h1-h6, strong, em, del, code, pre, ul, ol, li, blockquote, hr, br, table (thead, tbody, tr,
// th, td, inside a div that scrolls it sideways), and a (http/https links only, opened with
// rel="noopener noreferrer").
"use strict";

(function (global) {
  const SAFE_URL = /^https?:\/\/[^\s]+$/i;

  function el(tag, children) {
    const node = document.createElement(tag);
    for (const child of children || []) node.append(child);
    return node;
  }

  // Inline spans: `code`, **strong**, *em* / _em_, ~~del~~, [text](url), bare http(s) URLs.
  //
  // A hand-written scanner rather than one big regular expression: model output is untrusted,
  // and backtracking on runs of backticks or unclosed brackets made such an expression take
  // seconds on a few thousand characters. Every search for a closing delimiter goes through
  // `Closers`, which never scans the same stretch of text twice, so rendering is linear.
  const WORD = /[A-Za-z0-9_]/;
  const URL_CHAR = /[^\s<>()]/;
  const URL_END = /[^\s<>().,;:!?'"]/;
  const SPACE = /\s/g;

  class Closers {
    constructor(text) {
      this.text = text;
      this.cache = new Map(); // token -> [searched from, found at]
      this.runs = null;
    }

    // The first index >= from where token occurs, or -1.
    next(token, from) {
      const hit = this.cache.get(token);
      if (hit && hit[0] <= from && (hit[1] === -1 || hit[1] >= from)) return hit[1];
      const at = this.text.indexOf(token, from);
      this.cache.set(token, [from, at]);
      return at;
    }

    // The first whitespace character at or after from, or -1.
    nextSpace(from) {
      const hit = this.cache.get(SPACE);
      if (hit && hit[0] <= from && (hit[1] === -1 || hit[1] >= from)) return hit[1];
      SPACE.lastIndex = from;
      const m = SPACE.exec(this.text);
      const at = m ? m.index : -1;
      this.cache.set(SPACE, [from, at]);
      return at;
    }

    // The start of the first run of exactly `length` backticks at or after `from`, or -1.
    nextRun(length, from) {
      if (!this.runs) {
        this.runs = new Map(); // length -> {starts, position}
        const re = /`+/g;
        let m;
        while ((m = re.exec(this.text))) {
          let entry = this.runs.get(m[0].length);
          if (!entry) this.runs.set(m[0].length, (entry = { starts: [], position: 0 }));
          entry.starts.push(m.index);
        }
      }
      const entry = this.runs.get(length);
      if (!entry) return -1;
      while (entry.position < entry.starts.length && entry.starts[entry.position] < from) entry.position++;
      return entry.position < entry.starts.length ? entry.starts[entry.position] : -1;
    }
  }

  function runLength(text, i, ch) {
    let j = i;
    while (text[j] === ch) j++;
    return j - i;
  }

  // Each returns [end, node] for a span starting at i, or null.
  function codeSpan(text, i, length, closers) {
    const close = closers.nextRun(length, i + length);
    if (close < 0) return null;
    const code = text.slice(i + length, close).replace(/^ (.*) $/, "$1");
    return [close + length, el("code", [code])];
  }

  function delimited(text, i, token, tag, closers) {
    if (!text.startsWith(token, i)) return null;
    const close = closers.next(token, i + token.length + 1);
    if (close < 0) return null;
    return [close + token.length, el(tag, inline(text.slice(i + token.length, close)))];
  }

  function emphasis(text, i, ch, closers, boundary) {
    const first = text[i + 1];
    if (first === undefined || first === ch || /\s/.test(first)) return null;
    if (ch === "_" && !boundary) return null;
    const close = closers.next(ch, i + 2);
    if (close < 0) return null;
    if (ch === "_" && WORD.test(text[close + 1] || "")) return null;
    return [close + 1, el("em", inline(text.slice(i + 1, close)))];
  }

  function linkSpan(text, i, closers, tails) {
    const close = closers.next("]", i + 1);
    if (close <= i + 1 || text[close + 1] !== "(") return null;
    // Every "[" before this "]" shares its "(url)": look at it once.
    if (!tails.has(close)) {
      const end = closers.next(")", close + 2);
      const space = closers.nextSpace(close + 2);
      const valid = end > close + 2 && (space < 0 || space > end);
      tails.set(close, valid ? [end, text.slice(close + 2, end)] : null);
    }
    const tail = tails.get(close);
    if (!tail) return null;
    const [end, url] = tail;
    return [end + 1, link(url, inline(text.slice(i + 1, close)), text.slice(i, end + 1))];
  }

  function bareUrl(text, i) {
    const scheme = text.startsWith("https://", i) ? 8 : text.startsWith("http://", i) ? 7 : 0;
    if (!scheme) return null;
    let end = i + scheme;
    while (end < text.length && URL_CHAR.test(text[end])) end++;
    while (end > i + scheme + 1 && !URL_END.test(text[end - 1])) end--;
    if (end < i + scheme + 2 || !URL_END.test(text[end - 1])) return null;
    const url = text.slice(i, end);
    return [end, link(url, [url], url)];
  }

  function inline(text) {
    const out = [];
    const closers = new Closers(text);
    const tails = new Map();
    let plain = 0; // where the text not yet output starts
    let i = 0;
    while (i < text.length) {
      const c = text[i];
      const boundary = i === plain || !WORD.test(text[i - 1]);
      let span = null;
      if (c === "`") {
        const length = runLength(text, i, "`");
        span = codeSpan(text, i, length, closers);
        if (!span) {
          i += length; // no closing run of the same length: the whole run is text
          continue;
        }
      } else if (c === "*") {
        span = delimited(text, i, "**", "strong", closers) || emphasis(text, i, "*", closers, boundary);
      } else if (c === "_") {
        span = delimited(text, i, "__", "strong", closers) || emphasis(text, i, "_", closers, boundary);
      } else if (c === "~") {
        span = delimited(text, i, "~~", "del", closers);
      } else if (c === "[") {
        span = linkSpan(text, i, closers, tails);
      } else if (c === "h") {
        span = bareUrl(text, i);
      }
      if (!span) {
        i++;
        continue;
      }
      if (i > plain) appendAll(out, lineBreaks(text.slice(plain, i)));
      out.push(span[1]);
      i = plain = span[0];
    }
    if (plain < text.length) appendAll(out, lineBreaks(text.slice(plain)));
    return out;
  }

  function appendAll(target, items) {
    for (const item of items) target.push(item);
  }

  function link(url, children, source) {
    if (!SAFE_URL.test(url)) return document.createTextNode(source);
    const a = el("a", children);
    a.href = url;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    return a;
  }

  function lineBreaks(text) {
    const parts = text.split("\n");
    const out = [];
    parts.forEach((part, i) => {
      if (i > 0) out.push(el("br"));
      if (part) out.push(document.createTextNode(part));
    });
    return out;
  }

  // Patterns with one way to match each line (no nested or adjacent quantifiers that overlap).
  const FENCE = /^\s{0,3}(```+|~~~+)(.*)$/;
  const FENCE_INFO = /^[\w+#.-]*$/;
  const HEADING = /^\s{0,3}(#{1,6})\s+(.*)$/;
  const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
  const BULLET = /^(\s*)([-*+])\s+(.*)$/;
  const ORDERED = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;
  const QUOTE = /^\s{0,3}>\s?(.*)$/;

  // -- tables (GitHub's pipe tables) --------------------------------------------------------
  //
  // Each row is split in one pass over its characters; "\|" is a pipe inside a cell. No
  // regular expression looks at a whole row, so a row of any length is split in linear time.
  function splitRow(line) {
    const cells = [];
    let cell = "";
    let start = 0;
    const text = line.trim();
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (c === "\\" && text[i + 1] === "|") {
        cell += text.slice(start, i) + "|";
        start = ++i + 1;
      } else if (c === "|") {
        cells.push(cell + text.slice(start, i));
        cell = "";
        start = i + 1;
      }
    }
    cells.push(cell + text.slice(start));
    // A leading or trailing pipe opens or closes the row; it makes no empty cell.
    if (text.startsWith("|")) cells.shift();
    if (text.length > 1 && text.endsWith("|") && !text.endsWith("\\|")) cells.pop();
    return cells.map((c) => c.trim());
  }

  const ALIGNMENT = /^(:?)-+(:?)$/;

  // The alignments of a delimiter row ("| :-- | :-: | --: |"), or null when it is not one.
  function delimiterRow(line) {
    if (line.indexOf("-") < 0 || line.indexOf("|") < 0) return null;
    const cells = splitRow(line);
    const aligns = [];
    for (const cell of cells) {
      const m = ALIGNMENT.exec(cell);
      if (!m) return null;
      aligns.push(m[1] && m[2] ? "center" : m[2] ? "right" : m[1] ? "left" : "");
    }
    return aligns.length ? aligns : null;
  }

  function tableCell(tag, text, align) {
    const cell = el(tag, inline(text));
    if (align) cell.className = "align-" + align;
    return cell;
  }

  // A table starting at lines[i] (its header row), as [next line, node], or null.
  function table(lines, i) {
    if (i + 1 >= lines.length || lines[i].indexOf("|") < 0) return null;
    const aligns = delimiterRow(lines[i + 1]);
    if (!aligns) return null;
    const header = splitRow(lines[i]);
    if (header.length !== aligns.length) return null;
    const head = el("tr", header.map((text, k) => tableCell("th", text, aligns[k])));
    const body = el("tbody");
    let j = i + 2;
    while (j < lines.length && lines[j].trim() && lines[j].indexOf("|") >= 0) {
      const cells = splitRow(lines[j]);
      body.append(el("tr", aligns.map((align, k) => tableCell("td", cells[k] || "", align))));
      j++;
    }
    const box = el("div", [el("table", [el("thead", [head]), body])]);
    box.className = "table-wrap";
    return [j, box];
  }

  // "Title ##" -> "Title".
  function withoutClosingHashes(text) {
    let end = text.trimEnd().length;
    while (end > 0 && text[end - 1] === "#") end--;
    return text.slice(0, end).trimEnd();
  }

  // Render markdown text into a DocumentFragment. An unterminated code fence (a stream still
  // arriving) is shown as a code block up to the end.
  function render(text) {
    const fragment = document.createDocumentFragment();
    const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    let paragraph = [];

    function flush() {
      if (paragraph.length) {
        fragment.append(el("p", inline(paragraph.join("\n"))));
        paragraph = [];
      }
    }

    while (i < lines.length) {
      const line = lines[i];
      let m;
      if ((m = FENCE.exec(line)) && FENCE_INFO.test(m[2].trim())) {
        flush();
        const fence = m[1];
        const code = [];
        i++;
        while (i < lines.length && !lines[i].trim().startsWith(fence)) code.push(lines[i++]);
        i++;
        const codeEl = el("code", [code.join("\n")]);
        if (m[2].trim()) codeEl.dataset.lang = m[2].trim();
        fragment.append(el("pre", [codeEl]));
        continue;
      }
      if (!line.trim()) {
        flush();
        i++;
        continue;
      }
      if ((m = HEADING.exec(line))) {
        flush();
        fragment.append(el("h" + m[1].length, inline(withoutClosingHashes(m[2]))));
        i++;
        continue;
      }
      if (RULE.test(line)) {
        flush();
        fragment.append(el("hr"));
        i++;
        continue;
      }
      if (QUOTE.test(line)) {
        flush();
        const quoted = [];
        while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
          quoted.push(m[1]);
          i++;
        }
        fragment.append(el("blockquote", [render(quoted.join("\n"))]));
        continue;
      }
      if (BULLET.test(line) || ORDERED.test(line)) {
        flush();
        const ordered = !BULLET.test(line);
        const pattern = ordered ? ORDERED : BULLET;
        const list = el(ordered ? "ol" : "ul");
        if (ordered) {
          const first = parseInt(ORDERED.exec(line)[2], 10);
          if (first !== 1) list.start = first;
        }
        const items = [];
        while (i < lines.length) {
          const current = lines[i];
          if ((m = pattern.exec(current))) {
            items.push([m[3]]);
            i++;
          } else if (items.length && current.trim() && /^\s+/.test(current)) {
            items[items.length - 1].push(current.trim());
            i++;
          } else {
            break;
          }
        }
        for (const item of items) list.append(el("li", inline(item.join("\n"))));
        fragment.append(list);
        continue;
      }
      const found = table(lines, i);
      if (found) {
        flush();
        fragment.append(found[1]);
        i = found[0];
        continue;
      }
      paragraph.push(line);
      i++;
    }
    flush();
    return fragment;
  }

  global.renderMarkdown = render;
})(window);
