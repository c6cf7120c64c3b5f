// The cllm web chat (replies are drawn by reply.js): POST /api/chat and read its server-sent events; resume with Last-Event-ID
// when the connection drops (or the page is reloaded); DELETE /api/streams/{id} to stop. The URL
// names the open conversation (/?c=<id>). Model output only ever reaches the page as text nodes
// (see markdown.js).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const { AssistantView, addUserMessage, iconButton, scrollDown } = window.cllmReply;
  const messages = $("messages");
  const prompt = $("prompt");
  const sendButton = $("send");
  const stopButton = $("stop");
  const modelSelect = $("model");
  const modelCustom = $("model-custom");
  const list = $("conversations");
  const OTHER = "\u0000other";
  const PHONE = window.matchMedia("(max-width: 720px)");

  const state = {
    token: sessionStorage.getItem("cllm-token"),
    conversationId: null,
    title: null,
    saved: 0, // responses the open conversation has on the server
    streamId: null,
    streamConversation: null,
    live: [], // the nodes of the exchange streaming now, to put back when its conversation is opened
    busy: false,
    opening: 0,
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

  function notify(text) {
    const notice = $("notice");
    notice.textContent = text || "";
    notice.hidden = !text;
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

  // -- models ----------------------------------------------------------------------------------

  // "Other…" (type any name) stays last.
  const otherOption = document.createElement("option");
  otherOption.value = OTHER;
  otherOption.textContent = "Other…";

  function addModelOption(name) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    if (!otherOption.parentNode) modelSelect.append(otherOption);
    modelSelect.insertBefore(option, otherOption);
    return option;
  }

  async function loadModels() {
    let names = [];
    try {
      const response = await api("/v1/models");
      if (response.ok) names = ((await response.json()).data || []).map((m) => m.id).filter(Boolean);
    } catch (e) {
      names = [];
    }
    if (!otherOption.parentNode) modelSelect.append(otherOption);
    for (const name of names) {
      if (![...modelSelect.options].some((o) => o.value === name)) addModelOption(name);
    }
  }

  function chosenModel() {
    if (modelSelect.value === OTHER) return modelCustom.value.trim();
    return modelSelect.value;
  }

  function showModel(name) {
    if (!name) {
      modelSelect.value = "";
    } else if ([...modelSelect.options].some((o) => o.value === name)) {
      modelSelect.value = name;
    } else {
      modelSelect.value = addModelOption(name).value;
    }
    modelCustom.hidden = modelSelect.value !== OTHER;
  }

  // -- chatting ------------------------------------------------------------------------------

  function setBusy(busy) {
    state.busy = busy;
    sendButton.disabled = busy;
    stopButton.disabled = !busy;
  }

  // A reply in flight survives a reload: where to pick it up from.
  function remember(live) {
    if (live) sessionStorage.setItem("cllm-live", JSON.stringify(live));
    else sessionStorage.removeItem("cllm-live");
  }

  function remembered() {
    try {
      return JSON.parse(sessionStorage.getItem("cllm-live") || "null");
    } catch (e) {
      return null;
    }
  }

  async function send(content) {
    notify("");
    const question = addUserMessage(content);
    const model = chosenModel();
    const view = new AssistantView(model || null);
    state.live = [question, view.node];
    const body = { content };
    if (model) body.model = model;
    if (state.conversationId) body.conversation_id = state.conversationId;
    const saved = state.saved;
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
      await consume(response, view, { content, saved });
    } catch (e) {
      view.fail(String(e));
    } finally {
      finishStream();
    }
  }

  function finishStream() {
    const conversationId = state.streamConversation;
    state.streamId = null;
    state.streamConversation = null;
    state.live = [];
    remember(null);
    setBusy(false);
    loadConversations();
    return conversationId;
  }

  async function consume(response, view, live) {
    let lastId = 0;
    let ended = false;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        for await (const event of readEvents(response)) {
          if (event.id) lastId = parseInt(event.id, 10);
          const data = JSON.parse(event.data);
          if (event.event === "stream") {
            state.streamId = data.stream_id;
            state.streamConversation = data.conversation_id;
            if (data.model) {
              view.model = data.model;
              view.showModel();
            }
            remember({ conversationId: data.conversation_id, streamId: data.stream_id, ...live });
            if (!state.conversationId && state.streamConversation && view.node.isConnected) {
              // A new chat now has an id: the URL names it (the same history entry).
              state.conversationId = data.conversation_id;
              setUrl(data.conversation_id, true);
              markActive();
            }
            continue;
          }
          if ((event.event === "finish" || event.event === "error") && data.model) view.model = data.model;
          view.handle(event.event, data);
          if (event.event === "finish" || event.event === "error") {
            ended = true;
            if (data.response_id && state.conversationId === state.streamConversation) state.saved++;
          }
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

  // After a reload: read the reply that was streaming from its first event.
  async function resumeLive(live) {
    const response = await api("/api/streams/" + encodeURIComponent(live.streamId), {
      headers: { "Last-Event-ID": "0" },
    });
    if (response.status !== 200) {
      remember(null);
      return;
    }
    const question = addUserMessage(live.content || "");
    const view = new AssistantView(null);
    state.live = [question, view.node];
    setBusy(true);
    try {
      await consume(response, view, { content: live.content, saved: live.saved });
    } catch (e) {
      view.fail(String(e));
    } finally {
      finishStream();
    }
  }

  async function stop() {
    if (!state.streamId) return;
    stopButton.disabled = true;
    await api("/api/streams/" + state.streamId, { method: "DELETE" });
  }

  // -- the URL -----------------------------------------------------------------------------------

  function urlConversation() {
    return new URLSearchParams(location.search).get("c");
  }

  function setUrl(id, replace) {
    const url = id ? "/?c=" + encodeURIComponent(id) : "/";
    if (location.pathname + location.search === url) return;
    if (replace) history.replaceState({ c: id }, "", url);
    else history.pushState({ c: id }, "", url);
  }

  function showTitle(title) {
    state.title = title;
    $("title").textContent = title || (state.conversationId ? "(untitled)" : "New chat");
    document.title = title ? title + " · cllm" : "cllm";
  }

  // -- conversations -------------------------------------------------------------------------

  function markActive() {
    for (const item of list.children) {
      item.classList.toggle("active", item.dataset.id === state.conversationId);
      if (item.dataset.id === state.conversationId) showTitle(item.dataset.title);
    }
  }

  async function loadConversations() {
    const response = await api("/api/conversations?limit=100");
    if (!response.ok) return;
    const { conversations } = await response.json();
    list.replaceChildren(...conversations.map(conversationItem));
    markActive();
  }

  function conversationItem(conversation) {
    const item = document.createElement("li");
    item.dataset.id = conversation.id;
    item.dataset.title = conversation.title || "";
    const open = document.createElement("button");
    open.type = "button";
    open.className = "title";
    open.textContent = conversation.title || "(untitled)";
    open.title = (conversation.model || "") + " · " + conversation.updated;
    open.onclick = () => {
      closeSidebarOnPhone();
      if (conversation.id !== state.conversationId) openConversation(conversation.id, { push: true });
    };
    const rename = iconButton("rename", "Rename");
    rename.onclick = () => startRename(item, open);
    const remove = iconButton("delete", "Delete");
    remove.onclick = () => confirmDelete(conversation);
    item.append(open, rename, remove);
    return item;
  }

  function startRename(item, open) {
    const input = document.createElement("input");
    input.type = "text";
    input.className = "rename-input";
    input.maxLength = 200;
    input.value = item.dataset.title;
    input.setAttribute("aria-label", "New title");
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const title = input.value.trim();
      if (save && title && title !== item.dataset.title) {
        const response = await api("/api/conversations/" + encodeURIComponent(item.dataset.id), {
          method: "PATCH",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ title }),
        });
        if (!response.ok) notify("Could not rename: " + (await errorText(response)));
        await loadConversations();
        return;
      }
      input.replaceWith(open);
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    open.replaceWith(input);
    input.focus();
    input.select();
  }

  function confirmDelete(conversation) {
    const dialog = $("delete-dialog");
    $("delete-question").textContent = "Delete “" + (conversation.title || "(untitled)") + "”?";
    $("delete-confirm").disabled = state.busy && state.streamConversation === conversation.id;
    dialog.returnValue = "";
    dialog.onclose = async () => {
      if (dialog.returnValue !== "delete") return;
      const response = await api("/api/conversations/" + encodeURIComponent(conversation.id), {
        method: "DELETE",
      });
      if (!response.ok && response.status !== 404) {
        notify("Could not delete: " + (await errorText(response)));
        return;
      }
      if (conversation.id === state.conversationId) newChat(true);
      await loadConversations();
    };
    dialog.showModal();
  }

  function userText(message) {
    if (typeof message.content === "string") return message.content;
    if (Array.isArray(message.content)) {
      return message.content.filter((part) => part.type === "text").map((part) => part.text).join("\n");
    }
    return "";
  }

  async function openConversation(id, { push }) {
    const opening = ++state.opening;
    const response = await api("/api/conversations/" + encodeURIComponent(id));
    if (opening !== state.opening) return; // another conversation was asked for meanwhile
    if (!response.ok) {
      notify(response.status === 404 ? "That conversation no longer exists." : await errorText(response));
      newChat(true);
      return;
    }
    notify("");
    const conversation = await response.json();
    if (opening !== state.opening) return;
    state.conversationId = conversation.id;
    state.saved = conversation.responses.length;
    if (push) setUrl(conversation.id, false);
    await modelsLoaded;
    if (opening !== state.opening) return;
    showModel(conversation.model);
    showTitle(conversation.title);
    messages.replaceChildren();
    for (const logged of conversation.responses) {
      for (const message of logged.messages_in || []) {
        if (message.role === "user") addUserMessage(userText(message));
      }
      new AssistantView(logged.model).showLogged(logged);
    }
    if (state.busy && state.streamConversation === conversation.id) messages.append(...state.live);
    scrollDown();
    markActive();
    const live = remembered();
    if (live && live.conversationId === conversation.id && live.saved === state.saved && !state.busy) {
      await resumeLive(live);
    }
  }

  function newChat(replace) {
    state.opening++;
    state.conversationId = null;
    state.saved = 0;
    setUrl(null, replace);
    messages.replaceChildren();
    showTitle(null);
    markActive();
  }

  // -- the sidebar -------------------------------------------------------------------------------

  function sidebarShown() {
    return PHONE.matches ? document.body.classList.contains("sidebar-open") : !document.body.classList.contains("sidebar-collapsed");
  }

  function syncSidebar() {
    const shown = sidebarShown();
    $("sidebar-toggle").setAttribute("aria-expanded", String(shown));
    $("backdrop").hidden = !(PHONE.matches && shown);
    $("sidebar").inert = !shown;
  }

  function toggleSidebar() {
    if (PHONE.matches) document.body.classList.toggle("sidebar-open");
    else {
      document.body.classList.toggle("sidebar-collapsed");
      localStorage.setItem("cllm-sidebar", document.body.classList.contains("sidebar-collapsed") ? "hidden" : "shown");
    }
    syncSidebar();
  }

  function closeSidebarOnPhone() {
    if (PHONE.matches && document.body.classList.contains("sidebar-open")) toggleSidebar();
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
  modelSelect.addEventListener("change", () => {
    modelCustom.hidden = modelSelect.value !== OTHER;
    if (!modelCustom.hidden) modelCustom.focus();
  });
  $("new-chat").addEventListener("click", () => {
    closeSidebarOnPhone();
    if (state.conversationId) newChat(false);
    prompt.focus();
  });
  $("sidebar-toggle").addEventListener("click", toggleSidebar);
  $("backdrop").addEventListener("click", closeSidebarOnPhone);
  PHONE.addEventListener("change", syncSidebar);
  window.addEventListener("popstate", () => {
    const id = urlConversation();
    if (id) openConversation(id, { push: false });
    else newChat(true);
  });

  if (localStorage.getItem("cllm-sidebar") === "hidden") document.body.classList.add("sidebar-collapsed");
  syncSidebar();
  const modelsLoaded = loadModels();
  loadConversations();
  const initial = urlConversation();
  if (initial) openConversation(initial, { push: false });
})();
