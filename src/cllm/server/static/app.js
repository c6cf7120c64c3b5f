// The cllm web chat: POST /api/chat and read its server-sent events; resume with Last-Event-ID
// when the connection drops; DELETE /api/streams/{id} to stop. Model output only ever reaches the
// page as text nodes (see markdown.js).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const messages = $("messages");
  const prompt = $("prompt");
  const sendButton = $("send");
  const stopButton = $("stop");
  const modelInput = $("model");
  const list = $("conversations");

  const state = {
    token: sessionStorage.getItem("cllm-token"),
    conversationId: null,
    streamId: null,
    busy: false,
  };

  // -- HTTP ----------------------------------------------------------------------------------

  function askToken() {
    const dialog = $("token-dialog");
    return new Promise((resolve) => {
      $("token-form").onsubmit = () => {
        state.token = $("token").value;
        sessionStorage.setItem("cllm-token", state.token);
        resolve();
      };
      if (!dialog.open) dialog.showModal();
    });
  }

  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    if (state.token) headers["Authorization"] = "Bearer " + state.token;
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (response.status === 401) {
      await askToken();
      return api(path, options);
    }
    return response;
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return (body.error && body.error.message) || response.statusText;
    } catch (e) {
      return response.status + " " + response.statusText;
    }
  }

  // Server-sent events from a fetch response: {id, event, data} for each block.
  async function* readEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = { id: null, event: "message", data: "" };
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") event.data += (event.data ? "\n" : "") + value;
          else if (field === "event") event.event = value;
          else if (field === "id") event.id = value;
        }
        if (event.data) yield event;
      }
    }
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
  }

  function scrollDown() {
    messages.scrollTop = messages.scrollHeight;
  }

  function formatMeta(response) {
    const parts = [];
    if (response.finish_reason) parts.push("finish: " + response.finish_reason);
    const usage = response.usage;
    if (usage) {
      parts.push((usage.prompt_tokens ?? "?") + " in / " + (usage.completion_tokens ?? "?") + " out tokens");
    }
    if (typeof response.cost === "number") parts.push("$" + response.cost.toFixed(6));
    if (typeof response.duration === "number") parts.push(response.duration.toFixed(1) + " s");
    if (response.interrupted) parts.push("interrupted");
    return parts.join(" · ");
  }

  class AssistantView {
    constructor() {
      this.node = document.createElement("div");
      this.node.className = "message assistant";
      this.node.dataset.role = "assistant";
      this.node.dataset.state = "streaming";
      this.reasoning = null;
      this.body = document.createElement("div");
      this.body.className = "body";
      this.tools = document.createElement("div");
      this.tools.className = "tool-calls";
      this.meta = document.createElement("div");
      this.meta.className = "meta";
      this.node.append(this.body, this.tools, this.meta);
      messages.append(this.node);
      this.text = "";
      this.calls = new Map();
      this.pending = false;
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
      scrollDown();
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
        case "finish":
          this.finish(data.response || { finish_reason: data.reason, usage: data.usage });
          break;
        case "error":
          this.fail(data.kind === "cancelled" ? "stopped" : data.message, data.response);
          break;
      }
    }

    finish(response) {
      this.renderText();
      this.meta.textContent = formatMeta(response);
      this.node.dataset.state = "done";
    }

    fail(message, response) {
      this.renderText();
      this.meta.replaceChildren();
      const error = document.createElement("span");
      error.className = "error";
      error.textContent = message;
      this.meta.append(error);
      if (response) this.meta.append(" · " + formatMeta(response));
      this.node.dataset.state = "error";
    }

    showLogged(logged) {
      this.text = logged.text || "";
      if (logged.reasoning) this.reasoningBlock().textContent = logged.reasoning;
      (logged.tool_calls || []).forEach((call, i) => {
        const view = this.toolCall(i, call.name);
        view.args.textContent = call.arguments != null ? JSON.stringify(call.arguments, null, 2) : call.arguments_json;
      });
      if (logged.error && logged.interrupted) this.fail(logged.error, logged);
      else this.finish(logged);
    }
  }

  // -- chatting ------------------------------------------------------------------------------

  function setBusy(busy) {
    state.busy = busy;
    sendButton.disabled = busy;
    stopButton.disabled = !busy;
  }

  async function send(content) {
    addUserMessage(content);
    const view = new AssistantView();
    const body = { content };
    if (modelInput.value.trim()) body.model = modelInput.value.trim();
    if (state.conversationId) body.conversation_id = state.conversationId;
    setBusy(true);
    try {
      const response = await api("/api/chat", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        view.fail(await errorText(response));
        return;
      }
      await consume(response, view);
    } catch (e) {
      view.fail(String(e));
    } finally {
      state.streamId = null;
      setBusy(false);
      loadConversations();
    }
  }

  async function consume(response, view) {
    let lastId = 0;
    let ended = false;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        for await (const event of readEvents(response)) {
          if (event.id) lastId = parseInt(event.id, 10);
          const data = JSON.parse(event.data);
          if (event.event === "stream") {
            state.streamId = data.stream_id;
            state.conversationId = data.conversation_id;
            markActive();
            continue;
          }
          view.handle(event.event, data);
          if (event.event === "finish" || event.event === "error") ended = true;
        }
      } catch (e) {
        // The connection dropped: resume below.
      }
      if (ended || !state.streamId) break;
      await new Promise((resolve) => setTimeout(resolve, 300 * (attempt + 1)));
      response = await api("/api/streams/" + state.streamId, { headers: { "Last-Event-ID": String(lastId) } });
      if (!response.ok) break;
    }
    if (!ended) view.fail("the connection to the server was lost");
  }

  async function stop() {
    if (!state.streamId) return;
    stopButton.disabled = true;
    await api("/api/streams/" + state.streamId, { method: "DELETE" });
  }

  // -- conversations -------------------------------------------------------------------------

  function markActive() {
    for (const item of list.children) {
      item.classList.toggle("active", item.dataset.id === state.conversationId);
    }
  }

  async function loadConversations() {
    const response = await api("/api/conversations?limit=100");
    if (!response.ok) return;
    const { conversations } = await response.json();
    list.replaceChildren(
      ...conversations.map((conversation) => {
        const item = document.createElement("li");
        item.dataset.id = conversation.id;
        item.textContent = conversation.title || "(untitled)";
        item.title = (conversation.model || "") + " · " + conversation.updated;
        item.onclick = () => openConversation(conversation.id);
        return item;
      })
    );
    markActive();
  }

  function userText(message) {
    if (typeof message.content === "string") return message.content;
    if (Array.isArray(message.content)) {
      return message.content.filter((part) => part.type === "text").map((part) => part.text).join("\n");
    }
    return "";
  }

  async function openConversation(id) {
    if (state.busy) return;
    const response = await api("/api/conversations/" + encodeURIComponent(id));
    if (!response.ok) return;
    const conversation = await response.json();
    state.conversationId = conversation.id;
    if (conversation.model) modelInput.value = conversation.model;
    messages.replaceChildren();
    for (const logged of conversation.responses) {
      for (const message of logged.messages_in || []) {
        if (message.role === "user") addUserMessage(userText(message));
      }
      new AssistantView().showLogged(logged);
    }
    markActive();
  }

  // -- wiring --------------------------------------------------------------------------------

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const content = prompt.value.trim();
    if (!content || state.busy) return;
    prompt.value = "";
    send(content);
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  stopButton.addEventListener("click", stop);
  $("new-chat").addEventListener("click", () => {
    if (state.busy) return;
    state.conversationId = null;
    messages.replaceChildren();
    markActive();
    prompt.focus();
  });

  loadConversations();
})();
