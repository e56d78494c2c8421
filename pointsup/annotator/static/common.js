// What the point page (annotate.js) and the box page (boxes.js) share, loaded before either as
// one global, `window.Pointsup`: requests to the server, the page's state and status line, the
// outbox kept in localStorage, buttons, canvases and the annotator's name (the login form).
"use strict";

window.Pointsup = (() => {
  const REQUEST_TIMEOUT_MS = 10000;  // a request without a reply by then counts as an outage
  const NAME_KEY = "pointsup-annotator";  // localStorage: the name, shared by both pages

  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function setState(state) { document.body.dataset.state = state; }
  function state() { return document.body.dataset.state; }
  function say(text) { $("status").textContent = text; }
  function dpr() { return window.devicePixelRatio || 1; }

  // A JSON request; a refusal throws an Error with the reply's status and payload, no reply
  // (within REQUEST_TIMEOUT_MS) one without a status.
  async function request(method, path, body) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    const options = { method, credentials: "same-origin", headers: {}, signal: controller.signal };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    try {
      const response = await fetch(path, options);
      let payload = null;
      try { payload = await response.json(); } catch (ignored) { payload = null; }
      if (!response.ok) {
        const error = new Error((payload && payload.error) || `${response.status} ${response.statusText}`);
        error.status = response.status;
        error.payload = payload;
        throw error;
      }
      return payload;
    } finally {
      clearTimeout(timer);
    }
  }

  // No reply, or the server cannot answer now (restarting, database busy): worth sending again.
  function isOutage(error) { return error.status === undefined || error.status >= 500; }

  // A random id (32 hex digits): a request sent twice with it is stored once.
  function newId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // Keep the outbox's entries (already reduced to what can be stored) under `key`, or forget
  // the key when there are none.
  function storeOutbox(key, stored) {
    try {
      if (stored.length) localStorage.setItem(key, JSON.stringify(stored));
      else localStorage.removeItem(key);
    } catch (ignored) { /* storage full or disabled: the outbox stays in memory */ }
  }

  // Resolves once the session's outbox is sent.
  async function drained(session) {
    while (session.outbox.length || session.pumping) await sleep(20);
  }

  // Keep only `limit` images (those of `queue` stay), the least recently used going first.
  function pruneImages(images, queue, limit) {
    const wanted = new Set(queue.map((item) => item.image_id));
    for (const id of images.keys()) {
      if (images.size <= limit) break;
      if (!wanted.has(id)) images.delete(id);
    }
  }

  function sizeCanvas(canvas, cssWidth, cssHeight) {
    canvas.style.width = `${cssWidth}px`;
    canvas.style.height = `${cssHeight}px`;
    canvas.width = Math.round(cssWidth * dpr());
    canvas.height = Math.round(cssHeight * dpr());
  }

  function onButton(id, action) {
    $(id).addEventListener("click", (event) => { $(id).blur(); action(event); });
  }

  function toggleHelp(open) { $("help").hidden = !(open === undefined ? $("help").hidden : open); }

  // The login form: a name typed there is kept (localStorage and the address) and `start`ed; a
  // name in the address or kept from a previous visit is started at once, else the form shows.
  function login(start) {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const name = $("name-input").value.trim();
      if (!name) return;
      localStorage.setItem(NAME_KEY, name);
      const url = new URL(window.location.href);
      url.searchParams.set("annotator", name);
      history.replaceState(null, "", url);
      start(name);
    });
    document.body.dataset.connection = "online";
    const name = new URLSearchParams(window.location.search).get("annotator") || localStorage.getItem(NAME_KEY);
    if (name && name.trim()) {
      start(name.trim());
    } else {
      $("login").hidden = false;
      setState("login");
      $("name-input").focus();
    }
  }

  // Forget the annotator's name (localStorage and the address): the page asks for another.
  function forgetName() {
    localStorage.removeItem(NAME_KEY);
    const url = new URL(window.location.href);
    url.searchParams.delete("annotator");
    history.replaceState(null, "", url);
  }

  // The login form again, empty, after the page was handed to someone else.
  function showLogin() {
    $("who").textContent = "";
    $("counter").textContent = "";
    say("");
    $("name-input").value = "";
    $("login").hidden = false;
    setState("login");
    $("name-input").focus();
  }

  return Object.freeze({
    $, sleep, setState, state, say, dpr, request, isOutage, newId, storeOutbox, drained, pruneImages,
    sizeCanvas, onButton, toggleHelp, login, forgetName, showLogin,
  });
})();
