// The labelling page of `pointsup annotate serve`.
//
// The server sends the current point and the next few (`tasks`); their images are fetched
// ahead, so an answer shows the next point at once (drawn from memory) while the answer is
// posted in the background. Answers are posted one after another; when the server refuses
// one (say, after a restart or from a second tab), the page resynchronises with the server's
// state and shows the refused point again. Points are pixel indices: markers go at the pixel
// centre (x + 0.5, y + 0.5).
//
// The question is about one object, the one in the yellow box: everything outside the box is
// dimmed in both views, the box stays drawn (thicker when other objects of the category overlap
// it, with a note saying so), and a first-use instruction says what "object" means. When
// nothing is left, the page asks again every `recheck_ms`: objects held by inactive annotators
// come back to the pool. "switch annotator" hands the page to someone else.
"use strict";

(() => {
  const ANSWER_KEYS = { f: "object", j: "background", u: "unsure" };
  const UNDO_KEYS = new Set(["z", "Backspace"]);
  const CONTEXT_MARGIN = 0.3;      // context around the box, as a share of its larger side
  const MIN_CONTEXT_MARGIN = 8;    // image pixels
  const MAX_CONTEXT_SCALE = 8;     // screen pixels per image pixel in the context view
  const ZOOM_SHARE = 0.35;         // close-up side, as a share of the box's larger side
  const ZOOM_MIN = 20;             // close-up side limits, image pixels
  const ZOOM_MAX = 96;
  const SQUARE = 28;               // side of the green square around the point, screen pixels
  const IMAGE_CACHE = 8;           // decoded images kept
  const RETRY_MS = 2000;           // wait before asking an unreachable server again
  const COLOURS = { box: "#ffd400", point: "#ff2d55", square: "#1fdc3c", outside: "#202020", halo: "#ffffff", shadow: "#000000" };
  const DIM = "rgba(0, 0, 0, 0.6)";  // over everything outside the box
  const BOX_WIDTH = 2, BOX_WIDTH_CROWDED = 4;  // the box's yellow line, screen pixels (a dark edge around it)
  const NAME_KEY = "pointsup-annotator", INSTRUCTIONS_KEY = "pointsup-instructions-read";  // localStorage

  const $ = (id) => document.getElementById(id);
  const session = {
    annotator: null,
    queue: [],        // tasks; queue[0] is on screen
    shownAt: 0,       // when queue[0] appeared (performance.now())
    pending: 0,       // answers not yet acknowledged
    unacknowledged: [],  // their keys, oldest first
    chain: Promise.resolve(),
    failed: null,     // the first refused answer's error, until resynchronised
    busy: false,      // undo in progress
    summary: null,
    instructing: false,  // the first-use instructions are on screen
    recheck: null,    // timer asking for work again while nothing is left
    epoch: 0,         // bumped when the annotator changes: replies for the previous one are dropped
  };
  const images = new Map();  // image id -> {img, ready, failed, promise}; insertion order = recency
  // Answer -> next point latencies (ms) from the key press to the frame after the redraw.
  // (The page also exposes its state to tests as data-state, data-point-key and data-pending
  // attributes of <body>.)
  window.pointsupLatencies = [];

  function setState(state) { document.body.dataset.state = state; }
  function say(text) { $("status").textContent = text; }

  async function request(method, path, body) {
    const options = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
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
  }

  // ---- images ------------------------------------------------------------------------------

  function imageEntry(task) {
    let entry = images.get(task.image_id);
    if (entry) {
      images.delete(task.image_id);  // refresh its place in the recency order
    } else {
      const img = new Image();
      img.src = task.image_url;
      entry = { img, ready: false, failed: false };
      entry.promise = img.decode().then(() => { entry.ready = true; }, () => { entry.failed = true; });
    }
    images.set(task.image_id, entry);
    return entry;
  }

  function prefetch() {
    session.queue.forEach(imageEntry);
    const wanted = new Set(session.queue.map((t) => t.image_id));
    for (const id of images.keys()) {
      if (images.size <= IMAGE_CACHE) break;
      if (!wanted.has(id)) images.delete(id);
    }
  }

  // ---- drawing -----------------------------------------------------------------------------

  // A region [x0, x1) x [y0, y1) of the image with the canvas's aspect ratio, drawn to fill it.
  function drawRegion(canvas, img, region, smooth) {
    const ctx = canvas.getContext("2d");
    const scale = canvas.width / (region.x1 - region.x0);
    ctx.imageSmoothingEnabled = smooth;
    ctx.fillStyle = COLOURS.outside;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const sx0 = Math.max(region.x0, 0), sy0 = Math.max(region.y0, 0);
    const sx1 = Math.min(region.x1, img.naturalWidth), sy1 = Math.min(region.y1, img.naturalHeight);
    if (sx1 > sx0 && sy1 > sy0) {
      ctx.drawImage(img, sx0, sy0, sx1 - sx0, sy1 - sy0,
        (sx0 - region.x0) * scale, (sy0 - region.y0) * scale, (sx1 - sx0) * scale, (sy1 - sy0) * scale);
    }
    canvas.dataset.region = JSON.stringify([region.x0, region.y0, scale]);  // for tests: image -> canvas
    return { ctx, scale, at: (x, y) => [(x - region.x0) * scale, (y - region.y0) * scale] };
  }

  // Darken everything outside the box: the question is about what is inside.
  function dimOutside(view, bbox) {
    const [x, y, w, h] = bbox;
    const [ax, ay] = view.at(x, y);
    const canvas = view.ctx.canvas;
    view.ctx.beginPath();
    view.ctx.rect(0, 0, canvas.width, canvas.height);
    view.ctx.rect(ax, ay, w * view.scale, h * view.scale);
    view.ctx.fillStyle = DIM;
    view.ctx.fill("evenodd");
  }

  function fitAspect(cx, cy, width, height, aspect) {
    if (width / height < aspect) width = height * aspect; else height = width / aspect;
    return { x0: cx - width / 2, y0: cy - height / 2, x1: cx + width / 2, y1: cy + height / 2 };
  }

  // The target's box, with a dark edge (visible on yellow too); thicker when it is crowded.
  function strokeBox(view, task) {
    const [x, y, w, h] = task.bbox;
    const [ax, ay] = view.at(x, y);
    const width = task.overlapping > 0 ? BOX_WIDTH_CROWDED : BOX_WIDTH;
    dimOutside(view, task.bbox);
    for (const [lineWidth, colour] of [[width + 2, COLOURS.shadow], [width, COLOURS.box]]) {
      view.ctx.lineWidth = lineWidth;
      view.ctx.strokeStyle = colour;
      view.ctx.strokeRect(ax - width / 2, ay - width / 2, w * view.scale + width, h * view.scale + width);
    }
  }

  function drawContext(img, task) {
    const canvas = $("context-view");
    const [bx, by, bw, bh] = task.bbox;
    const margin = Math.max(CONTEXT_MARGIN * Math.max(bw, bh), MIN_CONTEXT_MARGIN);
    const minWidth = canvas.width / MAX_CONTEXT_SCALE, minHeight = canvas.height / MAX_CONTEXT_SCALE;
    const region = fitAspect(bx + bw / 2, by + bh / 2, Math.max(bw + 2 * margin, minWidth),
      Math.max(bh + 2 * margin, minHeight), canvas.width / canvas.height);
    const view = drawRegion(canvas, img, region, true);
    strokeBox(view, task);
    const [px, py] = view.at(task.x + 0.5, task.y + 0.5);
    const ctx = view.ctx;
    for (const [width, colour] of [[4, COLOURS.shadow], [2, COLOURS.square]]) {  // dark edge: visible on green too
      ctx.lineWidth = width;
      ctx.strokeStyle = colour;
      ctx.strokeRect(px - SQUARE / 2, py - SQUARE / 2, SQUARE, SQUARE);
    }
    ctx.beginPath();
    ctx.arc(px, py, 3.5, 0, 2 * Math.PI);
    ctx.fillStyle = COLOURS.point;
    ctx.fill();
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = COLOURS.halo;
    ctx.stroke();
  }

  function drawZoom(img, task) {
    const canvas = $("zoom-view");
    const [, , bw, bh] = task.bbox;
    const side = Math.min(Math.max(ZOOM_SHARE * Math.max(bw, bh), ZOOM_MIN), ZOOM_MAX);
    const cx = task.x + 0.5, cy = task.y + 0.5;
    const view = drawRegion(canvas, img, fitAspect(cx, cy, side, side, canvas.width / canvas.height), false);
    strokeBox(view, task);
    const ctx = view.ctx;
    const [px, py] = view.at(cx, cy);
    const half = view.scale / 2 + 1.5;  // just outside the labelled pixel
    const gap = half + 5, arm = gap + 14;
    for (const [width, colour] of [[4, COLOURS.shadow], [2, COLOURS.halo]]) {
      ctx.lineWidth = width;
      ctx.strokeStyle = colour;
      ctx.strokeRect(px - half, py - half, 2 * half, 2 * half);
    }
    for (const [width, colour] of [[4, COLOURS.shadow], [2, COLOURS.point]]) {
      ctx.lineWidth = width;
      ctx.strokeStyle = colour;
      ctx.beginPath();
      for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
        ctx.moveTo(px + dx * gap, py + dy * gap);
        ctx.lineTo(px + dx * arm, py + dy * arm);
      }
      ctx.stroke();
    }
  }

  // ---- flow --------------------------------------------------------------------------------

  function updateCounter(task) {
    const s = session.summary;
    if (!s || !task) return;
    $("counter").textContent = `object ${task.position + 1} of ${s.objects_total} · point ${task.point_index + 1} of ${s.num_points}`
      + ` · you: ${s.points_answered} points, ${s.objects_finished} objects`;
  }

  // Draw queue[0]; returns false when it cannot be drawn yet.
  function show() {
    const task = session.queue[0];
    if (session.instructing) return false;
    if (!task) {
      if (session.pending === 0 && !session.busy) finish(); else setState("waiting");
      return false;
    }
    const entry = imageEntry(task);
    if (!entry.ready) {
      if (entry.failed) {
        setState("error");
        say(`image ${task.image_id} could not be loaded`);
      } else {
        setState("loading");
        entry.promise.then(() => { if (session.queue[0] === task) show(); });
      }
      return false;
    }
    drawContext(entry.img, task);
    drawZoom(entry.img, task);
    $("category").textContent = task.category;
    showCrowdNote(task);
    updateCounter(task);
    $("labelling").hidden = false;
    $("done").hidden = true;
    document.body.dataset.pointKey = task.key;
    setState("ready");
    requestAnimationFrame(() => { session.shownAt = performance.now(); });
    return true;
  }

  function showCrowdNote(task) {
    const note = $("crowd-note");
    note.hidden = !(task.overlapping > 0);
    if (task.overlapping > 0) {
      const others = task.overlapping === 1 ? `1 other ${task.category} overlaps` : `${task.overlapping} other ${task.category} objects overlap`;
      note.textContent = `${others} this box: only the ${task.category} the box was drawn around counts; `
        + `a point on another one is background.`;
    }
  }

  // Nothing left for now: when others hold unfinished objects, ask again later (those of an
  // inactive annotator come back to the pool).
  function finish() {
    $("labelling").hidden = true;
    $("done").hidden = false;
    document.body.dataset.pointKey = "";
    setState("done");
    const s = session.summary;
    const waiting = s ? s.held_by_others : 0;
    $("done-detail").textContent = waiting
      ? `${waiting} unfinished object(s) are held by other annotators; those of anyone inactive for `
        + `${Math.round(s.claim_timeout_s / 60 * 10) / 10} min come back to the pool. This page checks again by itself.`
      : "";
    clearTimeout(session.recheck);
    if (waiting) session.recheck = setTimeout(resync, s.recheck_ms);
  }

  // Replace the queue with the server's tasks (after a resync or an undo).
  function sync(reply) {
    session.queue = [];
    merge(reply, []);
  }

  // Take the server's tasks as the queue, skipping `answeredSince`: the keys answered after
  // the request that this reply answers (the page runs ahead of the server).
  function merge(reply, answeredSince) {
    const tasks = reply.tasks;
    if (!answeredSince.every((key, i) => i < tasks.length && tasks[i].key === key)) return;
    session.summary = reply;
    $("who").textContent = reply.annotator;  // as first typed
    const onScreen = document.body.dataset.state === "ready" ? session.queue[0] : null;
    session.queue = tasks.slice(answeredSince.length);
    prefetch();
    if (!onScreen || !session.queue.length || session.queue[0].key !== onScreen.key) show();
    else updateCounter(onScreen);
  }

  // Fetch the annotator's state; retried every few seconds while the server is unreachable
  // (say, restarting), not when it refuses the request (a bad name, a missing token).
  async function resync() {
    const epoch = session.epoch;
    if (!session.annotator) return;
    try {
      const reply = await request("POST", "/api/state", { annotator: session.annotator });
      if (epoch !== session.epoch) return;
      if (document.body.dataset.state === "error") say("reconnected");
      sync(reply);
    } catch (error) {
      if (epoch !== session.epoch) return;
      setState("error");
      if (error.status >= 400 && error.status < 500) {
        say(`refused by the server: ${error.message}`);
      } else {
        say(`cannot reach the server (${error.message}); retrying`);
        setTimeout(resync, RETRY_MS);
      }
    }
  }

  async function send(task, label, responseMs) {
    if (session.failed) return;  // after a refusal, later answers are asked again
    try {
      const reply = await request("POST", "/api/answer", {
        annotator: session.annotator, position: task.position, point_index: task.point_index,
        label, response_ms: Math.round(responseMs),
      });
      const index = session.unacknowledged.indexOf(task.key);
      if (!session.failed && index >= 0) merge(reply, session.unacknowledged.slice(index + 1));
    } catch (error) {
      session.failed = error;
    }
  }

  function answer(label, pressedAt) {
    if (document.body.dataset.state !== "ready" || session.busy) return;
    const task = session.queue.shift();
    const responseMs = Math.max(0, pressedAt - session.shownAt);
    session.pending += 1;
    document.body.dataset.pending = session.pending;
    session.unacknowledged.push(task.key);
    if (show()) {
      requestAnimationFrame(() => setTimeout(() => window.pointsupLatencies.push(performance.now() - pressedAt), 0));
    }
    session.chain = session.chain.then(() => send(task, label, responseMs)).then(async () => {
      session.pending -= 1;
      document.body.dataset.pending = session.pending;
      session.unacknowledged.shift();
      if (session.pending > 0) return;
      if (session.failed) {
        say(`answer not saved (${session.failed.message}); the point is asked again`);
        session.failed = null;
        await resync();
      } else if (!session.queue.length) {
        show();  // nothing left: the end screen
      }
    });
  }

  async function undo() {
    if (session.busy || !session.annotator) return;
    session.busy = true;
    setState("undoing");
    await session.chain;
    try {
      const reply = await request("POST", "/api/undo", { annotator: session.annotator });
      session.busy = false;
      sync(reply);
      say(reply.undone ? "last answer undone" : "nothing to undo");
    } catch (error) {
      session.busy = false;
      say(`undo failed: ${error.message}`);
      await resync();
    }
  }

  // ---- input -------------------------------------------------------------------------------

  function onKey(event) {
    if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
    if (session.instructing) return;  // Enter or Space on the focused button closes them
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key in ANSWER_KEYS) {
      event.preventDefault();
      if (!event.repeat) answer(ANSWER_KEYS[key], event.timeStamp);
    } else if (UNDO_KEYS.has(key)) {
      event.preventDefault();
      if (!event.repeat) undo();
    }
  }

  function start(name) {
    session.annotator = name;
    $("who").textContent = name;
    $("login").hidden = true;
    $("switch-annotator").hidden = false;
    session.instructing = !localStorage.getItem(INSTRUCTIONS_KEY);
    if (session.instructing) showInstructions(); else setState("loading");
    resync();
  }

  function showInstructions() {
    session.instructing = true;
    $("labelling").hidden = true;
    $("done").hidden = true;
    $("instructions").hidden = false;
    setState("instructions");
    $("instructions-ok").focus();
  }

  function closeInstructions() {
    localStorage.setItem(INSTRUCTIONS_KEY, "1");
    session.instructing = false;
    $("instructions").hidden = true;
    $("instructions-ok").blur();
    if (!session.annotator) return;
    setState("loading");
    if (session.summary) show();  // else the server's reply draws the first point
  }

  // Hand the page to another annotator: once this one's answers are saved, ask for a name.
  async function switchAnnotator() {
    $("switch-annotator").blur();
    if (!session.annotator || session.busy) return;
    session.busy = true;
    await session.chain;
    session.busy = false;
    session.epoch += 1;
    clearTimeout(session.recheck);
    Object.assign(session, { annotator: null, queue: [], unacknowledged: [], failed: null, summary: null });
    localStorage.removeItem(NAME_KEY);
    const url = new URL(window.location.href);
    url.searchParams.delete("annotator");
    history.replaceState(null, "", url);
    for (const id of ["labelling", "done", "instructions", "switch-annotator"]) $(id).hidden = true;
    $("who").textContent = "";
    $("counter").textContent = "";
    say("");
    document.body.dataset.pointKey = "";
    $("name-input").value = "";
    $("login").hidden = false;
    setState("login");
    $("name-input").focus();
  }

  function init() {
    document.addEventListener("keydown", onKey);
    for (const button of document.querySelectorAll("button[data-label]")) {
      button.addEventListener("click", (event) => { button.blur(); answer(button.dataset.label, event.timeStamp); });
    }
    $("undo").addEventListener("click", () => { $("undo").blur(); undo(); });
    $("instructions-ok").addEventListener("click", closeInstructions);
    $("show-instructions").addEventListener("click", () => { $("show-instructions").blur(); if (session.annotator) showInstructions(); });
    $("switch-annotator").addEventListener("click", switchAnnotator);
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
    const name = new URLSearchParams(window.location.search).get("annotator") || localStorage.getItem(NAME_KEY);
    if (name && name.trim()) {
      start(name.trim());
    } else {
      $("login").hidden = false;
      setState("login");
      $("name-input").focus();
    }
  }

  init();
})();
