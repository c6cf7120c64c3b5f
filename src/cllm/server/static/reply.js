// One exchange on the cllm web page: the user's message, and the reply as it streams (text,
// reasoning, tool calls, attempts), with its model, usage, cost, and copy buttons. Loaded before
// app.js, which reaches it as window.cllmReply. Model output only becomes text nodes (markdown.js).
"use strict";

(function (global) {
  const messages = document.getElementById("messages");
  const SVG = "http://www.w3.org/2000/svg";

  // -- small pieces ----------------------------------------------------------------------------

  function icon(path) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 20 20");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("aria-hidden", "true");
    const shape = document.createElementNS(SVG, "path");
    shape.setAttribute("d", path);
    shape.setAttribute("fill", "none");
    shape.setAttribute("stroke", "currentColor");
    shape.setAttribute("stroke-width", "1.6");
    shape.setAttribute("stroke-linejoin", "round");
    svg.append(shape);
    return svg;
  }

  const ICONS = {
    copy: "M7 7h9v10H7zM4 13V3h9",
    rename: "M4 16l1-4 8-8 3 3-8 8zM11 6l3 3",
    delete: "M4 6h12M8 6V4h4v2M6 6l1 11h6l1-11",
  };

  function iconButton(kind, label) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "icon " + kind;
    button.title = label;
    button.setAttribute("aria-label", label);
    button.append(icon(ICONS[kind]));
    return button;
  }

  // Copy text, with the old way as a fallback where the clipboard API is not offered (a page
  // served over plain http on another machine is not a secure context).
  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (e) {
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.append(area);
      area.select();
      let ok = false;
      try {
        ok = document.execCommand("copy");
      } catch (e2) {
        ok = false;
      }
      area.remove();
      return ok;
    }
  }

  function copyButton(label, text) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.append(icon(ICONS.copy), document.createTextNode(label));
    button.onclick = async () => {
      const ok = await copyText(typeof text === "function" ? text() : text);
      button.lastChild.textContent = ok ? "Copied" : "Copy failed";
      button.dataset.copied = ok ? "yes" : "no";
      setTimeout(() => {
        button.lastChild.textContent = label;
        delete button.dataset.copied;
      }, 1500);
    };
    return button;
  }

  // US dollars: never "$0.000000"; nothing at all when the price is unknown.
  function formatCost(cost) {
    if (typeof cost !== "number" || !isFinite(cost) || cost < 0) return null;
    if (cost === 0) return "$0";
    if (cost < 0.000001) return "<$0.000001";
    const rounded = Number(cost.toPrecision(2));
    if (rounded >= 0.01) return "$" + cost.toFixed(2);
    // Two significant digits: $0.0042, $0.00000081.
    return "$" + rounded.toFixed(1 - Math.floor(Math.log10(rounded)));
  }

  // The name asked for, and what the provider says answered when that differs ("fast (gpt-4o-mini)").
  function modelLabel(asked, reported) {
    if (!asked) return reported || "";
    if (!reported || reported === asked || asked.split("/").pop() === reported) return asked;
    return asked + " (" + reported + ")";
  }

  const FINISH_NOTES = {
    length: "cut off at the token limit",
    content_filter: "blocked by the content filter",
    other: "ended early",
  };

  function formatMeta(view, response, stopped) {
    const parts = [];
    // A logged response's "model" is the name asked for; "response_model" is the provider's.
    const reported = "response_model" in response ? response.response_model : response.model;
    const model = modelLabel(view.model, reported);
    if (model) parts.push(model);
    const reason = response.finish_reason;
    if (FINISH_NOTES[reason]) parts.push(FINISH_NOTES[reason]);
    else if (reason === "stop" && !view.text && !view.calls.size) parts.push("empty reply");
    const usage = response.usage;
    if (usage) {
      parts.push((usage.prompt_tokens ?? "?") + " in / " + (usage.completion_tokens ?? "?") + " out tokens");
    }
    const cost = formatCost(response.cost);
    if (cost) parts.push(cost);
    if (typeof response.duration === "number") parts.push(response.duration.toFixed(1) + " s");
    if (response.interrupted && !stopped && reason !== "cancelled") parts.push("interrupted");
    return parts.join(" · ");
  }

  // -- rendering -----------------------------------------------------------------------------

  function addUserMessage(text) {
    const node = document.createElement("div");
    node.className = "message user";
    node.dataset.role = "user";
    const body = document.createElement("div");
    body.className = "body";
    body.textContent = text;
    node.append(body);
    messages.append(node);
    scrollDown();
    return node;
  }

  function scrollDown() {
    messages.scrollTop = messages.scrollHeight;
  }

  // Every code block gets a bar with its language and a copy button.
  function decorateCode(container) {
    for (const pre of container.querySelectorAll("pre")) {
      const code = pre.querySelector("code");
      if (!code) continue;
      const bar = document.createElement("div");
      bar.className = "code-bar";
      const lang = document.createElement("span");
      lang.textContent = code.dataset.lang || "code";
      bar.append(lang, copyButton("Copy code", () => code.textContent));
      const block = document.createElement("div");
      block.className = "code-block";
      pre.replaceWith(block);
      block.append(bar, pre);
    }
  }

  class AssistantView {
    constructor(model) {
      this.node = document.createElement("div");
      this.node.className = "message assistant";
      this.node.dataset.role = "assistant";
      this.node.dataset.state = "streaming";
      this.model = model || null;
      this.attempts = document.createElement("div");
      this.attempts.className = "attempts";
      this.reasoning = null;
      this.body = document.createElement("div");
      this.body.className = "body";
      this.tools = document.createElement("div");
      this.tools.className = "tool-calls";
      this.meta = document.createElement("div");
      this.meta.className = "meta";
      this.actions = document.createElement("div");
      this.actions.className = "actions";
      this.node.append(this.attempts, this.body, this.tools, this.meta, this.actions);
      messages.append(this.node);
      this.text = "";
      this.calls = new Map();
      this.pending = false;
      this.showModel();
    }

    showModel() {
      if (this.node.dataset.state === "streaming") this.meta.textContent = this.model || "";
    }

    scheduleRender() {
      // Re-render at most once per frame, whatever the event rate.
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.renderText();
      });
    }

    renderText() {
      this.body.replaceChildren(window.renderMarkdown(this.text));
      decorateCode(this.body);
      if (this.node.isConnected) scrollDown();
    }

    reasoningBlock() {
      if (!this.reasoning) {
        const details = document.createElement("details");
        details.className = "reasoning";
        const summary = document.createElement("summary");
        summary.textContent = "Reasoning";
        const pre = document.createElement("pre");
        details.append(summary, pre);
        this.node.insertBefore(details, this.body);
        this.reasoning = pre;
      }
      return this.reasoning;
    }

    toolCall(index, name) {
      let call = this.calls.get(index);
      if (!call) {
        const box = document.createElement("div");
        box.className = "tool-call";
        const label = document.createElement("div");
        label.className = "name";
        const args = document.createElement("pre");
        box.append(label, args);
        this.tools.append(box);
        call = { label, args };
        this.calls.set(index, call);
      }
      if (name) call.label.textContent = name + "()";
      return call;
    }

    // Another try at this reply (a retry or a fallback model). With `discard`, what the earlier
    // try said is kept out of the answer, folded away as abandoned.
    attempt(data) {
      const line = document.createElement("div");
      line.className = "attempt";
      const parts = ["attempt " + (data.number ?? "?")];
      if (data.model) parts.push(data.model);
      const error = data.error && typeof data.error === "object" ? data.error.message : data.error;
      if (error) parts.push("after: " + String(error));
      if (typeof data.delay === "number" && data.delay > 0) parts.push("delay " + data.delay.toFixed(1) + " s");
      line.textContent = parts.join(" · ");
      this.attempts.append(line);
      if (data.model) {
        this.model = data.model;
        this.showModel();
      }
      if (data.discard && (this.text || this.calls.size || this.reasoning)) {
        this.renderText();
        const abandoned = document.createElement("details");
        abandoned.className = "abandoned";
        const summary = document.createElement("summary");
        summary.textContent = "abandoned partial reply";
        abandoned.append(summary, ...this.body.childNodes, ...this.tools.childNodes);
        if (this.reasoning) abandoned.append(this.reasoning.parentNode);
        this.attempts.append(abandoned);
        this.text = "";
        this.calls = new Map();
        this.reasoning = null;
        this.renderText();
      }
    }

    handle(type, data) {
      switch (type) {
        case "text-delta":
          this.text += data.text;
          this.scheduleRender();
          break;
        case "reasoning-delta":
          this.reasoningBlock().append(data.text);
          break;
        case "tool-call-start":
          this.toolCall(data.index, data.name);
          break;
        case "tool-call-delta":
          this.toolCall(data.index, data.name).args.append(data.arguments_delta);
          break;
        case "tool-call-end": {
          const call = this.toolCall(data.index, data.name);
          call.args.textContent = data.error ? data.arguments_json : JSON.stringify(data.arguments, null, 2);
          if (data.error) call.args.classList.add("error");
          break;
        }
        case "attempt":
          this.attempt(data || {});
          break;
        case "finish":
          this.finish(data.response || { finish_reason: data.reason, usage: data.usage });
          break;
        case "error":
          if (data.kind === "cancelled") this.fail("stopped", data.response, true);
          else this.fail(data.message, data.response);
          break;
      }
    }

    addActions() {
      this.actions.replaceChildren();
      if (this.text) this.actions.append(copyButton("Copy", () => this.text));
    }

    finish(response) {
      this.node.dataset.state = "done";
      this.renderText();
      this.meta.textContent = formatMeta(this, response);
      this.addActions();
    }

    fail(message, response, stopped) {
      this.node.dataset.state = stopped ? "stopped" : "error";
      this.renderText();
      this.meta.replaceChildren();
      const error = document.createElement("span");
      error.className = stopped ? "stopped" : "error";
      error.textContent = message;
      this.meta.append(error);
      const rest = response ? formatMeta(this, response, stopped) : this.model || "";
      if (rest) this.meta.append(" · " + rest);
      this.addActions();
    }

    showLogged(logged) {
      this.model = logged.model;
      this.text = logged.text || "";
      if (logged.reasoning) this.reasoningBlock().textContent = logged.reasoning;
      (logged.tool_calls || []).forEach((call, i) => {
        const view = this.toolCall(i, call.name);
        view.args.textContent = call.arguments != null ? JSON.stringify(call.arguments, null, 2) : call.arguments_json;
      });
      if (logged.finish_reason === "cancelled") this.fail("stopped", logged, true);
      else if (logged.error && logged.interrupted) this.fail(logged.error, logged);
      else this.finish(logged);
    }
  }

  global.cllmReply = { AssistantView, addUserMessage, formatCost, iconButton, modelLabel, scrollDown };
})(window);
