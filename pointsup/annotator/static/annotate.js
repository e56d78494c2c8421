// The labelling page of `pointsup annotate serve`.
//
// The server sends the current point and the next few (`tasks`); their images are fetched
// ahead, so an answer shows the next point at once (drawn from memory) while the answer is
// sent in the background. Answers wait in an *outbox* (kept in localStorage too) and are sent
// one after another, each with an id made here: while the server cannot be reached the page
// says so in a banner, the annotator keeps labelling the points already fetched, and the
// outbox is sent when the server is back; a request sent twice (its reply lost) is stored once.
// When the server refuses an answer (say, a second tab answered that point), the page
// resynchronises with the server's state and shows the refused point again. Points are pixel
// indices: markers go at the pixel centre (x + 0.5, y + 0.5).
//
// The question is about one object, the one in the yellow box: everything outside the box is
// dimmed in both views, the box stays drawn (thicker when other objects of the category overlap
// it, with a note saying so), and a first-use instruction says what "object" means. The views
// fill the window (side by side, or one above the other on a tall screen) and magnify at most
// MAX_SCALE times; H hides the markers while held, B and C cycle brightness and contrast, ?
// shows the keys. R reviews the annotator's objects: their answered points drawn over the
// object, a click changes one. Gold questions (tasks with `gold`) are sent to /api/gold; those
// of the training round (`training`) show whether the answer was right. When nothing is left,
// the page asks again every `recheck_ms`. "switch annotator" hands the page to someone else.
// With a model (serve --weights), a task may carry the model's probability (`suggestion`): the
// page shows it ("model: object 93 %") and A or Enter answers with it; the answer says what
// was shown and whether the key accepted it.
"use strict";

(() => {
  const ANSWER_KEYS = { f: "object", j: "background", u: "unsure" };
  const UNDO_KEYS = new Set(["z", "Backspace"]);
  const ACCEPT_KEYS = new Set(["a", "Enter"]);  // answer with the model's suggestion
  const LABEL_CODES = { object: 1, background: 0, unsure: -1 };
  const LABEL_NAMES = { 1: "object", 0: "background", "-1": "unsure" };
  const CONTEXT_MARGIN = 0.3;      // context around the box, as a share of its larger side
  const MIN_CONTEXT_MARGIN = 8;    // image pixels
  const MAX_SCALE = 8;             // screen pixels per image pixel, both views: beyond, more context
  const ZOOM_SHARE = 0.35;         // close-up side, as a share of the box's larger side
  const ZOOM_MAX = 96;             // close-up side, image pixels (unless the view is wider than MAX_SCALE times it)
  const SQUARE_SHARE = 0.4;        // the green square's side, as a share of the box's smaller side on screen
  const SQUARE_MIN = 10, SQUARE_MAX = 28;  // its limits, CSS pixels
  const DOT_RADIUS = 3.5;          // the point in the context view, CSS pixels
  const CONTEXT_ASPECT = 4 / 3;    // width / height of the context view (the close-up is square)
  const ZOOM_VIEW_MAX = 480;       // the close-up's side at most, CSS pixels (the context view takes the rest)
  const VIEW_GAP = 12, CAPTION = 22, MIN_VIEW = 160, BOTTOM_MARGIN = 20;  // CSS pixels
  const BRIGHTNESS = [1, 1.5, 2.2, 3.2], CONTRAST = [1, 1.4, 2];  // B and C cycle through these
  const IMAGE_CACHE = 8;           // decoded images kept
  const RETRY_MS = 2000;           // wait before asking an unreachable server again
  const COLOURS = { box: "#ffd400", point: "#ff2d55", square: "#1fdc3c", outside: "#202020", halo: "#ffffff", shadow: "#000000" };
  const REVIEW_COLOURS = { 1: "#1fdc3c", 0: "#3b82f6", "-1": "#ffd400" };
  const REVIEW_RADIUS = 9, REVIEW_HIT = 16;  // review markers and how near a click must land, CSS pixels
  const DIM = "rgba(0, 0, 0, 0.6)";  // over everything outside the box
  const BOX_WIDTH = 2, BOX_WIDTH_CROWDED = 4;  // the box's yellow line, CSS pixels (a dark outline each side)
  const INSTRUCTIONS_KEY = "pointsup-instructions-read";  // localStorage
  const OUTBOX_KEY = "pointsup-outbox:";  // + the annotator's name in lower case

  const session = {
    annotator: null,
    queue: [],        // tasks; queue[0] is on screen
    shownAt: 0,       // when queue[0] appeared (performance.now())
    outbox: [],       // answers not yet acknowledged, oldest first: {id, path, body, key, task, attempted}
    pumping: false,   // the outbox is being sent
    online: true,
    lastSent: null,   // the outbox entry acknowledged last
    busy: false,      // undo, review or a switch in progress
    summary: null,
    instructing: false,  // the first-use instructions are on screen
    recheck: null,    // timer asking for work again while nothing is left
    epoch: 0,         // bumped when the annotator changes: replies for the previous one are dropped
    hideMarkers: false,
    brightness: 0, contrast: 0,  // indices into BRIGHTNESS, CONTRAST
    layoutFor: "",    // the window size the views were laid out for
    review: null,     // {objects, object} while reviewing
    feedbackTask: null,  // the training question whose feedback is on screen
  };
  const {
    $, sleep, setState, state, say, dpr, request, isOutage, newId, sizeCanvas, onButton, toggleHelp,
  } = window.Pointsup;  // common.js
  const drained = () => window.Pointsup.drained(session);
  const images = new Map();  // image id -> {img, ready, failed, promise}; insertion order = recency
  // Answer -> next point latencies (ms) from the key press to the frame after the redraw.
  // (The page also exposes its state to tests as data-state, data-point-key, data-pending and
  // data-connection attributes of <body>.)
  window.pointsupLatencies = [];

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
    window.Pointsup.pruneImages(images, session.queue, IMAGE_CACHE);
  }

  // ---- layout ------------------------------------------------------------------------------

  // Size both views to the window so that the answer buttons stay on screen: side by side, or
  // one above the other when that gives a larger context view (a phone held upright).
  function layout() {
    const views = $("views");
    const width = views.clientWidth;
    const below = $("controls").getBoundingClientRect().height + $("status").getBoundingClientRect().height;
    const height = window.innerHeight - views.getBoundingClientRect().top - below - BOTTOM_MARGIN;
    // side by side: the close-up as high as the context view, up to ZOOM_VIEW_MAX
    let rowHeight = (width - VIEW_GAP) / (CONTEXT_ASPECT + 1);
    if (rowHeight > ZOOM_VIEW_MAX) rowHeight = (width - VIEW_GAP - ZOOM_VIEW_MAX) / CONTEXT_ASPECT;
    rowHeight = Math.min(rowHeight, height - CAPTION);
    const columnHeight = Math.min(width / CONTEXT_ASPECT, (height - 2 * CAPTION - VIEW_GAP) / 2);
    const stacked = columnHeight > 1.15 * rowHeight;
    const side = Math.max(MIN_VIEW, Math.floor(stacked ? columnHeight : rowHeight));
    views.classList.toggle("stacked", stacked);
    sizeCanvas($("context-view"), Math.floor(side * CONTEXT_ASPECT), side);
    sizeCanvas($("zoom-view"), Math.min(side, ZOOM_VIEW_MAX), Math.min(side, ZOOM_VIEW_MAX));
    session.layoutFor = layoutKey();
  }

  // What the layout depends on: the window and whether the crowd note takes a line.
  function layoutKey() { return `${window.innerWidth}x${window.innerHeight}:${$("crowd-note").hidden}:${$("accept-suggestion").hidden}`; }

  // ---- drawing -----------------------------------------------------------------------------

  function imageFilter() {
    const b = BRIGHTNESS[session.brightness], c = CONTRAST[session.contrast];
    return b === 1 && c === 1 ? "none" : `brightness(${b}) contrast(${c})`;
  }

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
      ctx.filter = imageFilter();
      ctx.drawImage(img, sx0, sy0, sx1 - sx0, sy1 - sy0,
        (sx0 - region.x0) * scale, (sy0 - region.y0) * scale, (sx1 - sx0) * scale, (sy1 - sy0) * scale);
      ctx.filter = "none";
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

  // Stroke a rectangle as a coloured line with a dark outline on both sides (visible on any colour).
  function outlinedRect(ctx, x, y, w, h, width, colour) {
    for (const [lineWidth, stroke] of [[width + 4 * dpr(), COLOURS.shadow], [width, colour]]) {
      ctx.lineWidth = lineWidth;
      ctx.strokeStyle = stroke;
      ctx.strokeRect(x, y, w, h);
    }
  }

  // The target's box, outlined (visible on yellow and white too); thicker when it is crowded.
  function strokeBox(view, task) {
    const [x, y, w, h] = task.bbox;
    const [ax, ay] = view.at(x, y);
    const width = (task.overlapping > 0 ? BOX_WIDTH_CROWDED : BOX_WIDTH) * dpr();
    dimOutside(view, task.bbox);
    outlinedRect(view.ctx, ax - width / 2, ay - width / 2, w * view.scale + width, h * view.scale + width, width, COLOURS.box);
  }

  // A filled disc with a white then a dark ring: visible on red, white and black alike.
  function ringedDot(ctx, x, y, radius, fill) {
    const ratio = dpr();
    for (const [r, colour] of [[radius + 3 * ratio, COLOURS.shadow], [radius + 1.5 * ratio, COLOURS.halo], [radius, fill]]) {
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.fillStyle = colour;
      ctx.fill();
    }
  }

  function contextRegion(canvas, bbox) {
    const [bx, by, bw, bh] = bbox;
    const margin = Math.max(CONTEXT_MARGIN * Math.max(bw, bh), MIN_CONTEXT_MARGIN);
    const minWidth = canvas.width / (MAX_SCALE * dpr()), minHeight = canvas.height / (MAX_SCALE * dpr());
    return fitAspect(bx + bw / 2, by + bh / 2, Math.max(bw + 2 * margin, minWidth),
      Math.max(bh + 2 * margin, minHeight), canvas.width / canvas.height);
  }

  function drawContext(img, task) {
    const canvas = $("context-view");
    const view = drawRegion(canvas, img, contextRegion(canvas, task.bbox), true);
    if (session.hideMarkers) return;
    strokeBox(view, task);
    const [px, py] = view.at(task.x + 0.5, task.y + 0.5);
    const ratio = dpr();
    const square = Math.min(Math.max(SQUARE_SHARE * Math.min(task.bbox[2], task.bbox[3]) * view.scale,
      SQUARE_MIN * ratio), SQUARE_MAX * ratio);
    canvas.dataset.square = String(square);  // for tests
    outlinedRect(view.ctx, px - square / 2, py - square / 2, square, square, 2 * ratio, COLOURS.square);
    ringedDot(view.ctx, px, py, DOT_RADIUS * ratio, COLOURS.point);
  }

  function drawZoom(img, task) {
    const canvas = $("zoom-view");
    const [, , bw, bh] = task.bbox;
    const ratio = dpr();
    const side = Math.max(Math.min(ZOOM_SHARE * Math.max(bw, bh), ZOOM_MAX), canvas.width / (MAX_SCALE * ratio));
    const cx = task.x + 0.5, cy = task.y + 0.5;
    const view = drawRegion(canvas, img, fitAspect(cx, cy, side, side, canvas.width / canvas.height), false);
    if (session.hideMarkers) return;
    strokeBox(view, task);
    const ctx = view.ctx;
    const [px, py] = view.at(cx, cy);
    const half = view.scale / 2 + 1.5 * ratio;  // just outside the labelled pixel
    const gap = half + 5 * ratio, arm = gap + 14 * ratio;
    outlinedRect(ctx, px - half, py - half, 2 * half, 2 * half, 2 * ratio, COLOURS.halo);
    for (const [width, colour] of [[6 * ratio, COLOURS.shadow], [2 * ratio, COLOURS.point]]) {
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

  // Draw the point on screen again (markers hidden or shown, brightness changed, resized).
  function redraw() {
    if (session.review) { drawReview(); return; }
    const task = session.feedbackTask || session.queue[0];
    const entry = task && images.get(task.image_id);
    if (!entry || !entry.ready || !["ready", "feedback"].includes(state())) return;
    drawContext(entry.img, task);
    drawZoom(entry.img, task);
  }

  // ---- flow --------------------------------------------------------------------------------

  function updateCounter(task) {
    const s = session.summary;
    if (!s || !task) return;
    const where = task.gold !== undefined ? "check question" : `object ${task.position + 1} of ${s.objects_total} · point ${task.point_index + 1} of ${s.num_points}`;
    $("counter").textContent = `${where} · you: ${s.points_answered} points, ${s.objects_finished} objects`;
  }

  // Draw queue[0]; returns false when it cannot be drawn yet.
  function show() {
    const task = session.queue[0];
    if (session.instructing || session.review || session.feedbackTask) return false;
    if (!task) {
      if (!session.outbox.length && !session.busy) finish(); else setState("waiting");
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
    $("labelling").hidden = false;
    $("done").hidden = true;
    $("category").textContent = task.category;
    showCrowdNote(task);
    showSuggestion(task);
    updateCounter(task);
    if (session.layoutFor !== layoutKey()) layout();
    drawContext(entry.img, task);
    drawZoom(entry.img, task);
    document.body.dataset.pointKey = task.key;
    setState("ready");
    requestAnimationFrame(() => { session.shownAt = performance.now(); });
    return true;
  }

  // The model's answer for the point (serve --weights), on the button that accepts it.
  function suggestedLabel(probability) { return probability >= 0.5 ? "object" : "background"; }

  function showSuggestion(task) {
    const button = $("accept-suggestion");
    button.hidden = task.suggestion === undefined;
    if (button.hidden) return;
    const label = suggestedLabel(task.suggestion);
    const sure = label === "object" ? task.suggestion : 1 - task.suggestion;
    $("suggestion-text").textContent = `model: ${label} ${Math.round(100 * sure)} %`;
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
    $("counter").textContent = s ? `you: ${s.points_answered} points, ${s.objects_finished} objects` : "";
    $("done-detail").textContent = waiting
      ? `${waiting} unfinished object(s) are held by other annotators; those of anyone inactive for `
        + `${Math.round(s.claim_timeout_s / 60 * 10) / 10} min come back to the pool. This page checks again by itself.`
      : "";
    // a session from a folder of photos: objects come as their photos' boxes are finished (box page)
    const boxing = s && s.boxes && s.boxes.stage === "both" ? s.boxes.images_left : 0;
    if (boxing) $("done-detail").textContent += ` ${boxing} photo(s) still wait for their boxes (box page); their objects come here, and this page checks again by itself.`;
    if (s && s.boxes && s.boxes.stage === "boxes") $("done-detail").textContent = "This server asks for boxes only (--stage boxes): draw them on the box page.";
    clearTimeout(session.recheck);
    if (waiting || boxing) session.recheck = setTimeout(resync, s.recheck_ms);
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
    $("boxes-link").hidden = !reply.boxes || reply.boxes.stage === "points";  // a session from a folder of photos
    const onScreen = state() === "ready" ? session.queue[0] : null;
    session.queue = tasks.slice(answeredSince.length);
    prefetch();
    if (state() === "feedback") return;  // the next point comes when the feedback is read
    if (!onScreen || !session.queue.length || session.queue[0].key !== onScreen.key) show();
    else updateCounter(onScreen);
  }

  // ---- connection and outbox ---------------------------------------------------------------

  function setOnline(online) {
    const wasOffline = !session.online;
    session.online = online;
    document.body.dataset.connection = online ? "online" : "offline";
    $("offline").hidden = online;
    updatePending();
    if (online && wasOffline) say("reconnected");
  }

  function updatePending() {
    const count = session.outbox.length;
    document.body.dataset.pending = count;
    if (!session.online) {
      $("offline-detail").textContent = count
        ? `${count} answer(s) are kept in this browser and will be sent when it is back. Keep labelling.`
        : "Keep labelling: your answers will be kept in this browser and sent when it is back.";
    }
  }

  function outboxKey() { return OUTBOX_KEY + session.annotator.toLowerCase(); }

  function saveOutbox() {
    const stored = session.outbox.map(({ id, path, body, key, attempted }) => ({ id, path, body, key, attempted }));
    window.Pointsup.storeOutbox(outboxKey(), stored);
    updatePending();
  }

  function loadOutbox() {
    try {
      return JSON.parse(localStorage.getItem(outboxKey()) || "[]").map((entry) => ({ ...entry, task: null }));
    } catch (ignored) {
      return [];
    }
  }

  // Send the outbox, oldest first, until it is empty; an outage is retried with the same ids.
  async function pump() {
    if (session.pumping) return;
    session.pumping = true;
    const epoch = session.epoch;
    try {
      while (session.outbox.length && epoch === session.epoch) {
        const entry = session.outbox[0];
        if (!entry.attempted) { entry.attempted = true; saveOutbox(); }
        let reply;
        try {
          reply = await request("POST", entry.path, entry.body);
        } catch (error) {
          if (epoch !== session.epoch) return;
          if (isOutage(error)) {
            setOnline(false);
            await sleep(RETRY_MS);
            continue;
          }
          await refused(error);
          return;
        }
        if (epoch !== session.epoch) return;
        session.outbox.shift();
        session.lastSent = entry;
        saveOutbox();
        setOnline(true);
        merge(reply, session.outbox.map((e) => e.key));
      }
    } finally {
      session.pumping = false;
    }
    if (epoch === session.epoch && !session.queue.length && !session.busy) show();  // nothing left: the end screen
  }

  // The server refused an answer: it and those after it are asked again.
  async function refused(error) {
    const count = session.outbox.length;
    session.outbox = [];
    saveOutbox();
    setOnline(true);
    say(count > 1 ? `${count} answers not saved (${error.message}); their points are asked again`
      : `answer not saved (${error.message}); the point is asked again`);
    await resync();
  }

  // Fetch the annotator's state; retried every few seconds while the server is unreachable
  // (say, restarting), not when it refuses the request (a bad name, a missing token).
  async function resync() {
    const epoch = session.epoch;
    if (!session.annotator) return;
    try {
      const reply = await request("POST", "/api/state", { annotator: session.annotator });
      if (epoch !== session.epoch) return;
      setOnline(true);
      if (session.outbox.length) return;  // the outbox's replies bring the state
      sync(reply);
    } catch (error) {
      if (epoch !== session.epoch) return;
      if (error.status >= 400 && error.status < 500) {
        setState("error");
        say(`refused by the server: ${error.message}`);
      } else {
        setOnline(false);
        if (!session.queue.length) setState("waiting");
        setTimeout(resync, RETRY_MS);
      }
    }
  }

  function outboxEntry(task, label, responseMs, accepted) {
    const common = { annotator: session.annotator, label, response_ms: Math.round(responseMs) };
    if (task.gold !== undefined) {
      return { id: null, path: "/api/gold", key: task.key, task, attempted: false, body: { ...common, gold_index: task.gold } };
    }
    const id = newId();
    const shown = task.suggestion === undefined ? {} : { suggestion: task.suggestion, accepted };
    return {
      id, path: "/api/answer", key: task.key, task, attempted: false,
      body: { ...common, position: task.position, point_index: task.point_index, answer_id: id, ...shown },
    };
  }

  // Answer with the model's suggestion (A, Enter or its button).
  function accept(pressedAt) {
    const task = session.queue[0];
    if (state() === "ready" && task && task.suggestion !== undefined) answer(suggestedLabel(task.suggestion), pressedAt, true);
  }

  function answer(label, pressedAt, accepted = false) {
    if (state() === "feedback") { closeFeedback(); return; }
    if (state() !== "ready" || session.busy) return;
    const task = session.queue.shift();
    const responseMs = Math.max(0, pressedAt - session.shownAt);
    say("");  // a status line is about what came before
    session.outbox.push(outboxEntry(task, label, responseMs, accepted));
    saveOutbox();
    if (task.training) {
      session.feedbackTask = task;  // stays on screen with the feedback until it is read
      showFeedback(task, label);
    } else if (show()) {
      requestAnimationFrame(() => setTimeout(() => window.pointsupLatencies.push(performance.now() - pressedAt), 0));
    }
    pump();
  }

  // ---- training round ----------------------------------------------------------------------

  function showFeedback(task, label) {
    const right = LABEL_CODES[label] === task.truth;
    const truth = LABEL_NAMES[task.truth];
    const box = $("feedback");
    box.className = right ? "right" : "wrong";
    $("feedback-text").textContent = (right ? `Right: this point is ${truth}.` : label === "unsure"
      ? `This point is ${truth}: the object's mask says so.` : `Not quite: this point is ${truth} (the object's mask says so).`)
      + " Press any answer key to go on.";
    box.hidden = false;
    setState("feedback");
  }

  function closeFeedback() {
    $("feedback").hidden = true;
    session.feedbackTask = null;
    setState("loading");
    show();
  }

  // ---- undo --------------------------------------------------------------------------------

  async function undo() {
    if (session.busy || !session.annotator || state() === "feedback") return;
    const last = session.outbox[session.outbox.length - 1];
    if (last && !last.attempted && last.task) {  // never sent: taken back here
      session.outbox.pop();
      saveOutbox();
      session.queue.unshift(last.task);
      setState("loading");
      show();
      say("last answer undone");
      return;
    }
    if (!session.online) { say("undo waits until the server is back"); return; }
    session.busy = true;
    setState("undoing");
    await drained();
    if (session.lastSent && session.lastSent.path === "/api/gold") {
      session.busy = false;
      setState("loading");
      show();
      say("a check question cannot be undone");
      return;
    }
    try {
      const reply = await request("POST", "/api/undo", { annotator: session.annotator });
      session.busy = false;
      session.lastSent = null;
      sync(reply);
      say(reply.undone ? "last answer undone" : "nothing to undo");
    } catch (error) {
      session.busy = false;
      say(`undo failed: ${error.message}`);
      await resync();
    }
  }

  // ---- review ------------------------------------------------------------------------------

  // Review the annotator's objects (the last answered first): their points over the object.
  async function openReview(position) {
    if (!session.annotator || session.instructing || (session.busy && !session.review)) return;
    session.busy = true;
    setState("loading");
    await drained();
    const query = `annotator=${encodeURIComponent(session.annotator)}` + (position === undefined ? "" : `&position=${position}`);
    try {
      const reply = await request("GET", `/api/review?${query}`);
      if (!reply.object) {
        session.busy = false;
        say("nothing to review yet");
        show();
        return;
      }
      session.review = reply;
      const entry = imageEntry(reply.object);
      await entry.promise;
      $("labelling").hidden = true;
      $("done").hidden = true;
      $("review").hidden = false;
      drawReview();
      setState("review");
    } catch (error) {
      session.busy = false;
      session.review = null;
      say(`review failed: ${error.message}`);
      show();
    }
  }

  function closeReview() {
    session.review = null;
    session.busy = false;
    $("review").hidden = true;
    setState("loading");
    if (!show() && !session.queue.length) resync();
  }

  function stepReview(delta) {
    const r = session.review;
    const index = r.objects.indexOf(r.object.position) + delta;
    if (index >= 0 && index < r.objects.length) openReview(r.objects[index]);
  }

  function drawReview() {
    const r = session.review;
    const canvas = $("review-view");
    const cssWidth = Math.min($("review").clientWidth, (window.innerHeight - 200) * CONTEXT_ASPECT);
    sizeCanvas(canvas, Math.max(MIN_VIEW, Math.floor(cssWidth)), Math.max(MIN_VIEW, Math.floor(cssWidth / CONTEXT_ASPECT)));
    const entry = imageEntry(r.object);
    const view = drawRegion(canvas, entry.img, contextRegion(canvas, r.object.bbox), true);
    strokeBox(view, r.object);
    const ratio = dpr();
    view.ctx.font = `bold ${11 * ratio}px system-ui, sans-serif`;
    view.ctx.textAlign = "center";
    view.ctx.textBaseline = "middle";
    for (const point of r.object.points) {
      const [px, py] = view.at(point.x + 0.5, point.y + 0.5);
      ringedDot(view.ctx, px, py, REVIEW_RADIUS * ratio, REVIEW_COLOURS[point.label]);
      view.ctx.fillStyle = COLOURS.shadow;
      view.ctx.fillText(String(point.index + 1), px, py);
    }
    const index = r.objects.indexOf(r.object.position);
    const counts = { 1: 0, 0: 0, "-1": 0 };
    r.object.points.forEach((p) => { counts[p.label] += 1; });
    $("review-title").textContent = `${r.object.category}, object ${r.object.position + 1}: your ${r.object.points.length} answers `
      + `(${counts[1]} object, ${counts[0]} background, ${counts[-1]} unsure) · ${index + 1} of ${r.objects.length} reviewed objects, latest first`;
    $("review-older").disabled = index >= r.objects.length - 1;
    $("review-newer").disabled = index <= 0;
  }

  // A click on a point changes its label: object -> background -> unsure -> object.
  async function clickReview(event) {
    const r = session.review;
    if (!r) return;
    const canvas = $("review-view");
    const rect = canvas.getBoundingClientRect();
    const [x0, y0, scale] = JSON.parse(canvas.dataset.region);
    const cx = (event.clientX - rect.left) * canvas.width / rect.width, cy = (event.clientY - rect.top) * canvas.height / rect.height;
    let best = null, bestDistance = REVIEW_HIT * dpr();
    for (const point of r.object.points) {
      const distance = Math.hypot((point.x + 0.5 - x0) * scale - cx, (point.y + 0.5 - y0) * scale - cy);
      if (distance < bestDistance) { best = point; bestDistance = distance; }
    }
    if (!best) return;
    const next = { 1: "background", 0: "unsure", "-1": "object" }[best.label];
    try {
      const reply = await request("POST", "/api/relabel", {
        annotator: session.annotator, position: r.object.position, point_index: best.index, label: next,
      });
      r.object = reply.object;
      drawReview();
      say(`point ${best.index + 1} is now ${next}`);
    } catch (error) {
      say(`not changed (${error.message})`);
    }
  }

  // ---- view adjustments and help -----------------------------------------------------------

  function cycle(name, levels) {
    session[name] = (session[name] + 1) % levels.length;
    $(`${name}-button`).querySelector("span").textContent = `×${levels[session[name]]}`;
    redraw();
  }

  function setMarkersHidden(hidden) {
    if (session.hideMarkers === hidden) return;
    session.hideMarkers = hidden;
    document.body.dataset.markers = hidden ? "hidden" : "shown";
    redraw();
  }

  // ---- input -------------------------------------------------------------------------------

  function onKey(event) {
    if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
    if (session.instructing) return;  // Enter or Space on the focused button closes them
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "?") { event.preventDefault(); toggleHelp(); return; }
    if (key === "Escape") { toggleHelp(false); if (session.review) closeReview(); return; }
    if (session.review) { onReviewKey(event, key); return; }
    if (key in ANSWER_KEYS || (state() === "feedback" && (key === "Enter" || key === " "))) {
      event.preventDefault();
      if (!event.repeat) answer(ANSWER_KEYS[key], event.timeStamp);
    } else if (ACCEPT_KEYS.has(key)) {
      event.preventDefault();
      if (!event.repeat) accept(event.timeStamp);
    } else if (UNDO_KEYS.has(key)) {
      event.preventDefault();
      if (!event.repeat) undo();
    } else if (key === "h") {
      setMarkersHidden(true);
    } else if (key === "b" && !event.repeat) {
      cycle("brightness", BRIGHTNESS);
    } else if (key === "c" && !event.repeat) {
      cycle("contrast", CONTRAST);
    } else if (key === "r" && !event.repeat) {
      openReview();
    }
  }

  function onReviewKey(event, key) {
    if (key === "r") closeReview();
    else if (key === "ArrowLeft") stepReview(1);
    else if (key === "ArrowRight") stepReview(-1);
    else return;
    event.preventDefault();
  }

  function start(name) {
    session.annotator = name;
    $("who").textContent = name;
    $("login").hidden = true;
    $("switch-annotator").hidden = false;
    session.outbox = loadOutbox();  // answers a previous visit could not send
    updatePending();
    session.instructing = !localStorage.getItem(INSTRUCTIONS_KEY);
    if (session.instructing) showInstructions(); else setState("loading");
    if (session.outbox.length) pump(); else resync();
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
    await drained();
    session.busy = false;
    session.epoch += 1;
    clearTimeout(session.recheck);
    Object.assign(session, { annotator: null, queue: [], outbox: [], summary: null, review: null, lastSent: null });
    window.Pointsup.forgetName();
    for (const id of ["labelling", "done", "instructions", "review", "switch-annotator"]) $(id).hidden = true;
    document.body.dataset.pointKey = "";
    window.Pointsup.showLogin();
  }

  function init() {
    document.addEventListener("keydown", onKey);
    document.addEventListener("keyup", (event) => { if (event.key.toLowerCase() === "h") setMarkersHidden(false); });
    window.addEventListener("resize", () => { session.layoutFor = ""; if (state() === "ready") { layout(); redraw(); } else if (session.review) drawReview(); });
    for (const button of document.querySelectorAll("button[data-label]")) {
      button.addEventListener("click", (event) => { button.blur(); answer(button.dataset.label, event.timeStamp); });
    }
    const hide = $("hide-button");
    hide.addEventListener("pointerdown", () => setMarkersHidden(true));
    for (const type of ["pointerup", "pointerleave", "pointercancel"]) hide.addEventListener(type, () => setMarkersHidden(false));
    onButton("undo", undo);
    onButton("accept-suggestion", (event) => accept(event.timeStamp));
    onButton("brightness-button", () => cycle("brightness", BRIGHTNESS));
    onButton("contrast-button", () => cycle("contrast", CONTRAST));
    onButton("review-button", () => openReview());
    onButton("help-button", () => toggleHelp());
    onButton("help-close", () => toggleHelp(false));
    onButton("feedback-ok", closeFeedback);
    onButton("review-close", closeReview);
    onButton("review-older", () => stepReview(1));
    onButton("review-newer", () => stepReview(-1));
    $("review-view").addEventListener("click", clickReview);
    $("instructions-ok").addEventListener("click", closeInstructions);
    onButton("show-instructions", () => { if (session.annotator) showInstructions(); });
    $("switch-annotator").addEventListener("click", switchAnnotator);
    window.Pointsup.login(start);
  }

  init();
})();
