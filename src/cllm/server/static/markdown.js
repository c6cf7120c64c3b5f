// A small markdown renderer that builds DOM nodes and never parses HTML.
//
// Model output is untrusted: every piece of text becomes a text node (textContent), so markup in
// it shows as text and can never create an element. Only a fixed set of elements is produced:
// p, h1-h6, strong, em, del, code, pre, ul, ol, li, blockquote, hr, br, and a (http/https links
// only, opened with rel="noopener noreferrer").
"use strict";

(function (global) {
  const SAFE_URL = /^https?:\/\/[^\s]+$/i;

  function el(tag, children) {
    const node = document.createElement(tag);
    for (const child of children || []) node.append(child);
    return node;
  }

  // Inline spans: `code`, **strong**, *em* / _em_, ~~del~~, [text](url), bare http(s) URLs.
  const INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*([\s\S]+?)\*\*|__([\s\S]+?)__|~~([\s\S]+?)~~|\*([^*\s][^*]*?)\*|(^|[^\w])_([^_\s][^_]*?)_(?!\w)|\[([^\]]+)\]\(([^)\s]+)\)|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/;

  function inline(text) {
    const out = [];
    let rest = text;
    while (rest) {
      const m = INLINE.exec(rest);
      if (!m) {
        out.push(...lineBreaks(rest));
        break;
      }
      let start = m.index;
      if (m[8] !== undefined) start += m[7].length; // _em_ keeps the character before it
      if (start > 0) out.push(...lineBreaks(rest.slice(0, start)));
      if (m[1] !== undefined) {
        out.push(el("code", [m[2].replace(/^ (.*) $/, "$1")]));
      } else if (m[3] !== undefined || m[4] !== undefined) {
        out.push(el("strong", inline(m[3] !== undefined ? m[3] : m[4])));
      } else if (m[5] !== undefined) {
        out.push(el("del", inline(m[5])));
      } else if (m[6] !== undefined) {
        out.push(el("em", inline(m[6])));
      } else if (m[8] !== undefined) {
        out.push(el("em", inline(m[8])));
      } else if (m[9] !== undefined) {
        out.push(link(m[10], inline(m[9]), m[0]));
      } else if (m[11] !== undefined) {
        out.push(link(m[11], [m[11]], m[11]));
      }
      rest = rest.slice(m.index + m[0].length);
    }
    return out;
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

  const FENCE = /^\s{0,3}(```+|~~~+)\s*([\w+#.-]*)\s*$/;
  const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
  const BULLET = /^(\s*)([-*+])\s+(.*)$/;
  const ORDERED = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;
  const QUOTE = /^\s{0,3}>\s?(.*)$/;

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
      if ((m = FENCE.exec(line))) {
        flush();
        const fence = m[1];
        const code = [];
        i++;
        while (i < lines.length && !lines[i].trim().startsWith(fence)) code.push(lines[i++]);
        i++;
        const codeEl = el("code", [code.join("\n")]);
        if (m[2]) codeEl.dataset.lang = m[2];
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
        fragment.append(el("h" + m[1].length, inline(m[2])));
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
        let item = null;
        while (i < lines.length) {
          const current = lines[i];
          if ((m = pattern.exec(current))) {
            item = [m[3]];
            list.append(el("li"));
            i++;
          } else if (item && current.trim() && /^\s+/.test(current)) {
            item.push(current.trim());
            i++;
          } else {
            break;
          }
          list.lastChild.replaceChildren(...inline(item.join("\n")));
        }
        fragment.append(list);
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
