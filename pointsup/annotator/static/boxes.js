// The box page of `pointsup annotate serve --images DIR --categories ...` (the box stage).
//
// The server sends the annotator's photos: the one on screen and the next, prefetched. A box is
// drawn by extreme clicking (four clicks on the object's left-, right-, top- and bottom-most
// points, in any order: the box follows) or by dragging. Its category is the one chosen with the
// keys 1-9 (or typed after /); when none is chosen yet, the box waits for the key. N says "no
// more objects in this photo" and shows the next. Z (or Backspace) undoes the last click, then
// the last box, then the last "no more objects" (the photo comes back while nothing depends on
// it); on a photo taken over from someone else, their boxes are undone too. Each box records how
// long it took: from the moment the annotator could start it (the photo shown, the previous box
// done, an undo) to its last click (`draw_ms`) and to the category (`total_ms`); the clock stops
// while the tab is hidden, and a time over an hour is sent as unknown (null). As on the point page,
// boxes and "no more objects" wait in an outbox (kept in localStorage too) and are sent in order,
// each with an id made here, so that an outage loses nothing and a request sent twice is stored
// once. The photos on hand, the categories and the chosen one are kept in localStorage as well: a
// page reloaded while the server cannot be reached shows them and drawing goes on. A photo that
// does not load can be tried again (R) or skipped for now (S: it comes back after the next). Pixel indices: a click at image position
// (x, y) marks pixel (floor x, floor y); a box runs from the left edge of its left-most pixel to
// the right edge of its right-most one.
"use strict";

(() => {
  const UNDO_KEYS = new Set(["z", "Backspace"]);
  const MAX_TIME_MS = 3600000;     // a longer time (a tab left open) is sent as unknown: the server keeps none longer
  const MIN_SIDE = 2;              // image pixels a box spans each way at least (as the server requires)
  const DRAG_THRESHOLD = 6;        // CSS pixels the pointer must move while pressed for a drag
  const MAX_SCALE = 8;             // screen pixels per image pixel at most
  const MIN_VIEW = 200, BOTTOM_MARGIN = 16;  // CSS pixels
  const LOUPE = 150, LOUPE_ZOOM = 4;  // the magnifier's side (CSS pixels) and its screen pixels per image pixel
  const IMAGE_CACHE = 6;
  const RETRY_MS = 2000;
  const PALETTE = ["#ffd400", "#1fdc3c", "#ff2d55", "#3b82f6", "#ff8c00", "#b15cff", "#00d5d5", "#ff5cc8", "#9be15d", "#ffffff"];
  const SHADOW = "#000000", HALO = "#ffffff";
  const OUTBOX_KEY = "pointsup-box-outbox:";  // + the annotator's name in lower case
  const VIEW_KEY = "pointsup-box-view:";  // + the name: the photos on hand, the categories, the chosen one

  const session = {
    annotator: null,
    summary: null,     // the last box state from the server
    categories: [],    // [{id, name}]
    category: null,    // the chosen category's id
    filter: "",        // the typed category filter
    queue: [],         // photos; queue[0] is on screen: {image_id, key, image_url, width, height, file_name, boxes}
    shown: null,       // the image id last put on screen
    clicks: [],        // pixel indices [x, y] of the box being clicked
    pending: null,     // a box waiting for its category: {extreme_points | box, drawMs}
    down: null,        // where the pointer went down: {cx, cy, at: [x, y]}
    drag: null,        // {from, to} image positions while dragging
    pointer: null,     // the pointer's image position (crosshair, magnifier)
    readyAt: 0,        // when the annotator could start the next box (performance.now(); moved on by time hidden)
    hiddenAt: null,    // when the tab was hidden (the clock stops meanwhile)
    outbox: [],        // not yet acknowledged, oldest first: {id, path, body, kind, image, box, attempted}
    pumping: false,
    online: true,
    busy: false,       // undo or a switch in progress
    recheck: null,
    epoch: 0,          // bumped when the annotator changes: replies for the previous one are dropped
    hideBoxes: false,
    layoutFor: "",
  };
  const {
    $, sleep, setState, state, say, dpr, request, isOutage, newId, sizeCanvas, onButton, toggleHelp,
  } = window.Pointsup;  // common.js
  const drained = () => window.Pointsup.drained(session);
  const images = new Map();  // image id -> {img, ready, failed, promise}; insertion order = recency

  function colour(categoryId) { return PALETTE[(categoryId - 1 + PALETTE.length) % PALETTE.length]; }
  function categoryName(id) { const c = session.categories.find((k) => k.id === id); return c ? c.name : String(id); }

  // ---- geometry ----------------------------------------------------------------------------

  // The four clicks as [left, top, right, bottom]: the assignment with the largest
  // -x_left - y_top + x_right + y_bottom (as the server orders them).
  function orderExtreme(points) {
    let best = null, bestScore = -Infinity;
    const permute = (rest, chosen) => {
      if (!rest.length) {
        const [l, t, r, b] = chosen.map((k) => points[k]);
        const score = -l[0] - t[1] + r[0] + b[1];
        if (score > bestScore) { bestScore = score; best = chosen; }
        return;
      }
      rest.forEach((k, i) => permute(rest.filter((_, j) => j !== i), [...chosen, k]));
    };
    permute([0, 1, 2, 3], []);
    return best.map((k) => points[k]);
  }

  function bboxOf(geometry) {
    if (geometry.extreme_points) {
      const xs = geometry.extreme_points.map((p) => p[0]), ys = geometry.extreme_points.map((p) => p[1]);
      const x0 = Math.min(...xs), y0 = Math.min(...ys);
      return [x0, y0, Math.max(...xs) + 1 - x0, Math.max(...ys) + 1 - y0];
    }
    const [x0, y0, x1, y1] = geometry.box;
    return [x0, y0, x1 - x0, y1 - y0];
  }

  // ---- images and layout -------------------------------------------------------------------

  // The photo's image, loading or loaded (`fresh`: asked again, past the browser's cache).
  function imageEntry(photo, fresh) {
    let entry = images.get(photo.image_id);
    if (entry && !fresh) {
      images.delete(photo.image_id);
    } else {
      if (entry) images.delete(photo.image_id);
      const img = new Image();
      img.src = fresh ? `${photo.image_url}${photo.image_url.includes("?") ? "&" : "?"}retry=${Date.now()}` : photo.image_url;
      entry = { img, ready: false, failed: false };
      entry.promise = img.decode().then(() => { entry.ready = true; }, () => { entry.failed = true; });
    }
    images.set(photo.image_id, entry);
    return entry;
  }

  function prefetch() {
    session.queue.forEach(imageEntry);
    window.Pointsup.pruneImages(images, session.queue, IMAGE_CACHE);
  }

  // The whole photo, as large as the window allows below the question and above the buttons.
  function layout(photo) {
    const stage = $("box-stage");
    const width = Math.max(MIN_VIEW, $("boxing").clientWidth - 4);
    const below = $("box-controls").getBoundingClientRect().height + $("status").getBoundingClientRect().height;
    const height = Math.max(MIN_VIEW, window.innerHeight - stage.getBoundingClientRect().top - below - BOTTOM_MARGIN);
    const scale = Math.min(width / photo.width, height / photo.height, MAX_SCALE);
    const cssWidth = Math.max(1, Math.floor(photo.width * scale)), cssHeight = Math.max(1, Math.floor(photo.height * scale));
    sizeCanvas($("box-view"), cssWidth, cssHeight);
    sizeCanvas($("box-overlay"), cssWidth, cssHeight);
    session.layoutFor = `${window.innerWidth}x${window.innerHeight}:${photo.image_id}`;
  }

  // Device pixels per image pixel across and down ([sx, sy]: the canvas sides are rounded apart,
  // so they differ slightly), and the mapping for tests: image -> canvas (as on the point page).
  function scales(canvas, photo) { return [canvas.width / photo.width, canvas.height / photo.height]; }

  function viewScale(photo) {
    const canvas = $("box-view");
    const [sx, sy] = scales(canvas, photo);
    canvas.dataset.region = JSON.stringify([0, 0, sx]);
    canvas.dataset.scaleY = String(sy);
    canvas.dataset.cssScale = String(parseFloat(canvas.style.width) / photo.width);
    return [sx, sy];
  }

  // The image position under a pointer event.
  function imagePosition(event, photo) {
    const rect = $("box-overlay").getBoundingClientRect();
    return [(event.clientX - rect.left) / rect.width * photo.width, (event.clientY - rect.top) / rect.height * photo.height];
  }

  function pixelOf(position, photo) {
    return [Math.min(Math.max(Math.floor(position[0]), 0), photo.width - 1), Math.min(Math.max(Math.floor(position[1]), 0), photo.height - 1)];
  }

  // ---- drawing -----------------------------------------------------------------------------

  function outlinedRect(ctx, x, y, w, h, width, stroke, dashed) {
    ctx.setLineDash(dashed ? [6 * dpr(), 4 * dpr()] : []);
    for (const [lineWidth, c] of [[width + 3 * dpr(), SHADOW], [width, stroke]]) {
      ctx.lineWidth = lineWidth;
      ctx.strokeStyle = c;
      ctx.strokeRect(x, y, w, h);
    }
    ctx.setLineDash([]);
  }

  function dot(ctx, x, y, radius, fill) {
    for (const [r, c] of [[radius + 2.5 * dpr(), SHADOW], [radius + 1.2 * dpr(), HALO], [radius, fill]]) {
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.fillStyle = c;
      ctx.fill();
    }
  }

  function drawBox(ctx, box, sx, sy) {
    const [x, y, w, h] = box.bbox;
    const c = colour(box.category_id);
    outlinedRect(ctx, x * sx, y * sy, w * sx, h * sy, 2 * dpr(), c, false);
    for (const [px, py] of box.extreme_points || []) dot(ctx, (px + 0.5) * sx, (py + 0.5) * sy, 2.5 * dpr(), c);
    const label = categoryName(box.category_id);
    ctx.font = `${12 * dpr()}px system-ui, sans-serif`;
    const textWidth = ctx.measureText(label).width + 6 * dpr(), textHeight = 16 * dpr();
    const ty = y * sy >= textHeight ? y * sy - textHeight : y * sy;
    ctx.fillStyle = c;
    ctx.fillRect(x * sx, ty, textWidth, textHeight);
    ctx.fillStyle = SHADOW;
    ctx.textBaseline = "middle";
    ctx.fillText(label, x * sx + 3 * dpr(), ty + textHeight / 2);
  }

  // The photo and its boxes.
  function drawBase() {
    const photo = session.queue[0];
    const entry = photo && images.get(photo.image_id);
    if (!entry || !entry.ready) return;
    const canvas = $("box-view");
    const ctx = canvas.getContext("2d");
    const [sx, sy] = viewScale(photo);
    ctx.imageSmoothingEnabled = sx < 2;
    ctx.drawImage(entry.img, 0, 0, canvas.width, canvas.height);
    if (!session.hideBoxes) for (const box of photo.boxes) drawBox(ctx, box, sx, sy);
  }

  // The crosshair, the clicks of the box being drawn, a box waiting for its category, the drag
  // rectangle and the magnifier.
  function drawOverlay() {
    const photo = session.queue[0];
    const canvas = $("box-overlay");
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!photo || !["ready", "category"].includes(state())) return;
    const [sx, sy] = scales(canvas, photo);
    const ratio = dpr();
    const current = session.category === null ? "#ffd400" : colour(session.category);
    if (session.pending) {
      const [x, y, w, h] = bboxOf(session.pending);
      outlinedRect(ctx, x * sx, y * sy, w * sx, h * sy, 2 * ratio, "#ffd400", true);
    }
    if (session.clicks.length >= 2) {
      const xs = session.clicks.map((p) => p[0]), ys = session.clicks.map((p) => p[1]);
      const x0 = Math.min(...xs), y0 = Math.min(...ys);
      outlinedRect(ctx, x0 * sx, y0 * sy, (Math.max(...xs) + 1 - x0) * sx, (Math.max(...ys) + 1 - y0) * sy, 1.5 * ratio, current, true);
    }
    session.clicks.forEach(([px, py]) => dot(ctx, (px + 0.5) * sx, (py + 0.5) * sy, 4 * ratio, current));
    if (session.drag && session.drag.to) {
      const [ax, ay] = session.drag.from, [bx, by] = session.drag.to;
      outlinedRect(ctx, Math.min(ax, bx) * sx, Math.min(ay, by) * sy, Math.abs(bx - ax) * sx, Math.abs(by - ay) * sy, 2 * ratio, current, true);
    }
    const pointer = session.pointer;
    if (!pointer) return;
    const [cx, cy] = [pointer[0] * sx, pointer[1] * sy];
    for (const [width, c] of [[3 * ratio, "rgba(0, 0, 0, 0.6)"], [1 * ratio, "rgba(255, 255, 255, 0.9)"]]) {
      ctx.lineWidth = width;
      ctx.strokeStyle = c;
      ctx.beginPath();
      ctx.moveTo(0, cy); ctx.lineTo(canvas.width, cy);
      ctx.moveTo(cx, 0); ctx.lineTo(cx, canvas.height);
      ctx.stroke();
    }
    drawLoupe(ctx, photo, pointer, sx, sy);
  }

  // A close-up near the pointer when the photo is shown small (precise extreme points).
  function drawLoupe(ctx, photo, pointer, sx, sy) {
    const entry = images.get(photo.image_id);
    if (!entry || !entry.ready || sx / dpr() >= LOUPE_ZOOM * 0.75) return;
    const ratio = dpr(), side = LOUPE * ratio, source = LOUPE / LOUPE_ZOOM;
    const canvas = ctx.canvas;
    let dx = pointer[0] * sx + 24 * ratio, dy = pointer[1] * sy - 24 * ratio - side;
    if (dx + side > canvas.width) dx = pointer[0] * sx - 24 * ratio - side;
    if (dy < 0) dy = pointer[1] * sy + 24 * ratio;
    ctx.save();
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = "#202020";
    ctx.fillRect(dx, dy, side, side);
    ctx.drawImage(entry.img, pointer[0] - source / 2, pointer[1] - source / 2, source, source, dx, dy, side, side);
    ctx.strokeStyle = SHADOW;
    ctx.lineWidth = 2 * ratio;
    ctx.strokeRect(dx, dy, side, side);
    for (const [width, c] of [[3 * ratio, "rgba(0, 0, 0, 0.7)"], [1 * ratio, HALO]]) {
      ctx.strokeStyle = c;
      ctx.lineWidth = width;
      ctx.beginPath();
      ctx.moveTo(dx + side / 2, dy); ctx.lineTo(dx + side / 2, dy + side);
      ctx.moveTo(dx, dy + side / 2); ctx.lineTo(dx + side, dy + side / 2);
      ctx.stroke();
    }
    ctx.restore();
  }

  function redraw() { drawBase(); drawOverlay(); }

  // ---- categories --------------------------------------------------------------------------

  // The categories the keys 1-9 pick from: all, or those matching the typed filter (names that
  // start with it first).
  function visibleCategories() {
    const typed = session.filter.trim().toLowerCase();
    if (!typed) return session.categories;
    const matching = session.categories.filter((c) => c.name.toLowerCase().includes(typed));
    return [...matching.filter((c) => c.name.toLowerCase().startsWith(typed)), ...matching.filter((c) => !c.name.toLowerCase().startsWith(typed))];
  }

  function renderCategories() {
    const list = $("category-list");
    list.textContent = "";
    visibleCategories().forEach((category, index) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.category = String(category.id);
      button.classList.toggle("chosen", category.id === session.category);
      if (index < 9) {
        const key = document.createElement("kbd");
        key.textContent = String(index + 1);
        button.append(key, " ");
      }
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour(category.id);
      button.append(swatch, category.name);
      button.addEventListener("click", () => { button.blur(); chooseCategory(category.id, performance.now()); });
      item.append(button);
      list.append(item);
    });
    if (session.filter && !visibleCategories().length) {
      const none = document.createElement("li");
      none.textContent = "no category matches";
      list.append(none);
    }
    $("category-filter").hidden = session.categories.length <= 9 && !session.filter && document.activeElement !== $("category-filter");
    document.body.dataset.category = session.category === null ? "" : String(session.category);
  }

  function chooseCategory(id, at) {
    if (!["ready", "category"].includes(state())) return;
    session.category = id;
    saveView();
    renderCategories();
    if (session.pending) completeBox(session.pending, at);
    else drawOverlay();
  }

  function openFilter() {
    const input = $("category-filter");
    input.hidden = false;
    input.value = session.filter;
    input.focus();
  }

  function closeFilter() {
    session.filter = "";
    $("category-filter").value = "";
    $("category-filter").blur();
    renderCategories();
  }

  // ---- the clock ---------------------------------------------------------------------------

  // The next box can be started from `at` on (the clock stops while the tab is hidden).
  function startClock(at) {
    session.readyAt = at;
    if (document.visibilityState === "hidden") session.hiddenAt = at;
  }

  function onVisibility() {
    const now = performance.now();
    if (document.visibilityState === "hidden") {
      if (session.hiddenAt === null) session.hiddenAt = now;
    } else if (session.hiddenAt !== null) {
      session.readyAt += now - session.hiddenAt;  // the time hidden is not the box's
      session.hiddenAt = null;
    }
  }

  // A measured time as sent: whole milliseconds, or null (unknown) when over an hour.
  function timing(ms) { return ms <= MAX_TIME_MS ? Math.round(ms) : null; }

  // ---- drawing boxes -----------------------------------------------------------------------

  function canDraw() { return ["ready", "category"].includes(state()) && !session.busy && session.queue.length > 0; }

  function updateMarks() {
    const photo = session.queue[0];
    document.body.dataset.clicks = String(session.clicks.length);
    document.body.dataset.boxes = photo ? String(photo.boxes.length) : "0";
    document.body.dataset.image = photo ? String(photo.image_id) : "";
  }

  function addClick(position, at) {
    const photo = session.queue[0];
    session.clicks.push(pixelOf(position, photo));
    updateMarks();
    if (session.clicks.length === 4) {
      const points = orderExtreme(session.clicks);
      session.clicks = [];
      if (tooSmall({ extreme_points: points }, "the four clicks span")) return;
      geometryDone({ extreme_points: points }, at);
    } else {
      say(`${session.clicks.length} of 4 extreme points`);
      drawOverlay();
    }
  }

  function completeDrag(from, to, at) {
    const photo = session.queue[0];
    const clampX = (v) => Math.min(Math.max(v, 0), photo.width), clampY = (v) => Math.min(Math.max(v, 0), photo.height);
    const x0 = Math.min(clampX(Math.floor(Math.min(from[0], to[0]))), photo.width - 1);
    const y0 = Math.min(clampY(Math.floor(Math.min(from[1], to[1]))), photo.height - 1);
    const x1 = Math.max(clampX(Math.ceil(Math.max(from[0], to[0]))), x0 + 1);
    const y1 = Math.max(clampY(Math.ceil(Math.max(from[1], to[1]))), y0 + 1);
    if (tooSmall({ box: [x0, y0, x1, y1] }, "the dragged box spans")) return;
    geometryDone({ box: [x0, y0, x1, y1] }, at);
  }

  // A box narrower or lower than MIN_SIDE pixels (four clicks on one pixel) is not drawn: the
  // page says so (true) and the annotator starts again.
  function tooSmall(geometry, what) {
    const [, , w, h] = bboxOf(geometry);
    if (w >= MIN_SIDE && h >= MIN_SIDE) return false;
    say(`not a box: ${what} only ${w} x ${h} pixels; a box must span at least ${MIN_SIDE} pixels each way: draw it again`);
    updateMarks();
    drawOverlay();
    return true;
  }

  // The box's geometry is complete: it takes the chosen category, or waits for one.
  function geometryDone(geometry, at) {
    geometry.drawMs = Math.max(0, at - session.readyAt);
    if (session.category !== null) {
      completeBox(geometry, at);
      return;
    }
    session.pending = geometry;
    setState("category");
    const keys = visibleCategories().slice(0, 9).map((c, i) => `${i + 1} ${c.name}`).join(", ");
    say(`choose the box's category: ${keys}${session.categories.length > 9 ? "; / to type a name" : ""}`);
    drawOverlay();
    updateMarks();
  }

  function completeBox(geometry, at) {
    const photo = session.queue[0];
    const id = newId();
    const body = {
      annotator: session.annotator, image_id: photo.image_id, category_id: session.category,
      draw_ms: timing(geometry.drawMs), total_ms: timing(Math.max(0, at - session.readyAt)), box_id: id,
    };
    if (geometry.extreme_points) body.extreme_points = geometry.extreme_points; else body.box = geometry.box;
    const box = {
      id: `local:${id}`, category_id: session.category, bbox: bboxOf(geometry),
      extreme_points: geometry.extreme_points || null, mine: true,
    };
    photo.boxes.push(box);
    session.outbox.push({ id, path: "/api/boxes/box", body, kind: "box", image: photo, box, attempted: false });
    saveOutbox();
    session.pending = null;
    startClock(at);
    setState("ready");
    say(`${categoryName(box.category_id)} box drawn (${photo.boxes.length} on this photo)`);
    updateMarks();
    redraw();
    pump();
  }

  function clearClicks() {
    if (session.drag || session.clicks.length || session.pending) {
      session.clicks = [];
      session.drag = null;
      session.down = null;
      session.pending = null;
      if (state() === "category") setState("ready");
      say("clicks cleared");
      updateMarks();
      drawOverlay();
    }
  }

  // "No more objects in this photo".
  function finishPhoto() {
    if (state() === "error") {
      say("this photo could not be loaded: R tries again, S skips it for now (N would record it as having no objects)");
      return;
    }
    if (!canDraw()) return;
    if (session.clicks.length || session.pending) {
      say("finish the box first (4 clicks and its category), or clear its clicks with Esc");
      return;
    }
    const photo = session.queue.shift();
    const id = newId();
    session.outbox.push({
      id, path: "/api/boxes/finish", body: { annotator: session.annotator, image_id: photo.image_id, finish_id: id },
      kind: "finish", image: photo, box: null, attempted: false,
    });
    saveOutbox();
    const count = photo.boxes.length;
    say(count ? `photo finished: ${count} box${count === 1 ? "" : "es"}` : "photo finished: no objects in it");
    show();
    pump();
  }

  // ---- pointer -----------------------------------------------------------------------------

  function onPointerDown(event) {
    if (event.button !== 0 || !canDraw()) return;
    if (state() === "category") { say("choose the category of the dashed box first (1-9), or Esc to drop it"); return; }
    $("box-overlay").setPointerCapture(event.pointerId);
    session.down = { cx: event.clientX, cy: event.clientY, at: imagePosition(event, session.queue[0]) };
  }

  function onPointerMove(event) {
    const photo = session.queue[0];
    if (!photo || !canDraw()) return;
    session.pointer = imagePosition(event, photo);
    const down = session.down;
    if (down && !session.drag && !session.clicks.length && Math.hypot(event.clientX - down.cx, event.clientY - down.cy) >= DRAG_THRESHOLD) {
      session.drag = { from: down.at, to: null };
    }
    if (session.drag) session.drag.to = session.pointer;
    drawOverlay();
  }

  function onPointerUp(event) {
    const down = session.down;
    session.down = null;
    if (!down || !canDraw()) return;
    const at = performance.now();
    if (session.drag) {
      const drag = session.drag;
      session.drag = null;
      completeDrag(drag.from, imagePosition(event, session.queue[0]), at);
    } else {
      addClick(down.at, at);
    }
  }

  function onPointerLeave() {
    session.pointer = null;
    drawOverlay();
  }

  // ---- flow --------------------------------------------------------------------------------

  function updateCounter() {
    const s = session.summary;
    if (!s) return;
    const photo = session.queue[0];
    const where = photo ? `${photo.file_name} · ` : "";
    $("counter").textContent = `${where}${s.images_finished} of ${s.images_total} photos finished · you: ${s.boxes_drawn} boxes, `
      + `${s.images_finished_by_you} photos`;
  }

  // Draw queue[0]; false when it cannot be drawn yet.
  function show() {
    const photo = session.queue[0];
    updateMarks();
    $("load-error").hidden = true;
    if (!photo) {
      if (!session.outbox.length && !session.busy) finish(); else setState("waiting");
      return false;
    }
    const entry = imageEntry(photo);
    if (!entry.ready) {
      if (entry.failed) {
        setState("error");
        $("boxing").hidden = true;  // not the previous photo's canvas: this one is not there
        $("load-error").hidden = false;
        $("load-error-name").textContent = photo.file_name;
        say(`photo ${photo.file_name} could not be loaded: R tries again, S skips it for now`);
      } else {
        setState("loading");
        entry.promise.then(() => { if (session.queue[0] === photo) show(); });
      }
      return false;
    }
    $("boxing").hidden = false;
    $("done").hidden = true;
    $("image-name").textContent = photo.file_name;
    setState(session.pending ? "category" : "ready");
    if (session.layoutFor !== `${window.innerWidth}x${window.innerHeight}:${photo.image_id}`) layout(photo);
    if (session.shown !== photo.image_id) {
      session.shown = photo.image_id;
      startClock(performance.now());
    }
    redraw();
    updateCounter();
    return true;
  }

  function finish() {
    $("boxing").hidden = true;
    $("done").hidden = false;
    setState("done");
    session.shown = null;
    const s = session.summary;
    clearTimeout(session.recheck);
    if (!s) return;
    updateCounter();
    const waiting = s.images_held_by_others;
    const parts = [];
    if (s.stage === "points") parts.push("This server asks points only (--stage points): no boxes are drawn now.");
    else if (waiting) {
      parts.push(`${waiting} unfinished photo(s) are held by other annotators; those of anyone inactive for `
        + `${Math.round(s.claim_timeout_s / 60 * 10) / 10} min come back to the pool. This page checks again by itself.`);
    }
    if (s.stage !== "boxes" && s.objects_total) parts.push(`${s.objects_total} boxed object(s) are ready for point questions.`);
    $("done-detail").textContent = parts.join(" ");
    $("done-points").hidden = s.stage === "boxes";
    if (waiting && s.stage !== "points") session.recheck = setTimeout(resync, s.recheck_ms);
  }

  // Take the server's state: its photos replace the queue (what the page drew is acknowledged by
  // then); the clicks of a box being drawn stay when its photo is still the first.
  function sync(reply) {
    session.summary = reply;
    $("who").textContent = reply.annotator;
    $("points-link").hidden = reply.stage === "boxes";
    if (JSON.stringify(session.categories) !== JSON.stringify(reply.categories)) {  // first, or kept from another session
      const chosen = session.categories.find((c) => c.id === session.category);
      session.categories = reply.categories;
      session.category = chosen && reply.categories.some((c) => c.id === chosen.id && c.name === chosen.name) ? chosen.id : null;
      if (session.categories.length === 1) session.category = session.categories[0].id;
      renderCategories();
    }
    const before = session.queue[0];
    session.queue = reply.images.map((photo) => ({ ...photo, boxes: photo.boxes.slice() }));
    if (!before || !session.queue.length || session.queue[0].image_id !== before.image_id) {
      if (session.clicks.length || session.pending) say("the photo changed: its clicks were dropped");
      session.clicks = [];
      session.pending = null;
      session.drag = null;
    }
    prefetch();
    saveView();
    show();
  }

  // ---- connection and outbox ---------------------------------------------------------------

  function setOnline(online) {
    const wasOffline = !session.online;
    session.online = online;
    document.body.dataset.connection = online ? "online" : "offline";
    $("offline").hidden = online;
    updatePending();
    if (online && wasOffline) {
      say("reconnected");
      if (state() === "error") retryPhoto();  // the photo may have failed for want of the server
    }
  }

  function updatePending() {
    const count = session.outbox.length;
    document.body.dataset.pending = count;
    if (!session.online) {
      $("offline-detail").textContent = count
        ? `${count} box(es) and photo(s) are kept in this browser and will be sent when it is back. Keep drawing.`
        : "Keep drawing: your boxes will be kept in this browser and sent when it is back.";
    }
  }

  function outboxKey() { return OUTBOX_KEY + session.annotator.toLowerCase(); }

  // A finished photo is kept with its "no more objects" (`photo`), so that a reloaded page can
  // still take it back at once while it was never sent.
  function saveOutbox() {
    const stored = session.outbox.map(({ id, path, body, kind, attempted, image }) => (
      { id, path, body, kind, attempted, photo: kind === "finish" ? image : null }));
    window.Pointsup.storeOutbox(outboxKey(), stored);
    saveView();
    updatePending();
  }

  // The stored outbox, each entry linked again to its photo (on hand, or finished in it) and box.
  function loadOutbox() {
    let stored;
    try {
      stored = JSON.parse(localStorage.getItem(outboxKey()) || "[]");
    } catch (ignored) {
      return [];
    }
    const photos = new Map(session.queue.map((photo) => [photo.image_id, photo]));
    const entries = stored.map(({ photo, ...entry }) => {
      if (entry.kind === "finish" && photo) photos.set(photo.image_id, photo);
      return { ...entry, image: entry.kind === "finish" ? photo || null : null, box: null };
    });
    for (const entry of entries) {
      if (entry.kind !== "box") continue;
      const photo = photos.get(entry.body.image_id);
      entry.box = photo ? photo.boxes.find((b) => b.id === `local:${entry.id}`) || null : null;
      entry.image = entry.box ? photo : null;
    }
    return entries;
  }

  function viewKey() { return VIEW_KEY + session.annotator.toLowerCase(); }

  // What a reloaded page shows before the server answers (or while it cannot be reached): the
  // photos on hand with their boxes, the categories, the chosen one, the last counters.
  function saveView() {
    if (!session.annotator) return;
    const view = { categories: session.categories, category: session.category, queue: session.queue, summary: session.summary };
    try {
      localStorage.setItem(viewKey(), JSON.stringify(view));
    } catch (ignored) { /* storage full or disabled */ }
  }

  function loadView() {
    try {
      const view = JSON.parse(localStorage.getItem(viewKey()) || "null");
      if (!view || !Array.isArray(view.categories) || !Array.isArray(view.queue)) return;
      session.categories = view.categories;
      session.category = view.categories.some((c) => c.id === view.category) ? view.category : null;
      session.queue = view.queue;
      session.summary = view.summary || null;
    } catch (ignored) { /* a damaged view: the server's state follows */ }
  }

  // Send the outbox, oldest first; an outage is retried with the same ids.
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
          refused(error);
          return;
        }
        if (epoch !== session.epoch) return;
        session.outbox.shift();
        saveOutbox();
        setOnline(true);
        if (session.outbox.length) { session.summary = reply; updateCounter(); } else sync(reply);
      }
    } finally {
      session.pumping = false;
    }
  }

  // The server refused a box or a "no more objects": it and what came after are dropped.
  function refused(error) {
    const count = session.outbox.length;
    session.outbox = [];
    saveOutbox();
    setOnline(true);
    say(count > 1 ? `${count} boxes or photos not saved (${error.message})` : `not saved (${error.message})`);
    if (error.payload && error.payload.state) sync(error.payload.state); else resync();
  }

  async function resync() {
    const epoch = session.epoch;
    if (!session.annotator) return;
    try {
      const reply = await request("POST", "/api/boxes/state", { annotator: session.annotator });
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

  // ---- a photo that does not load ----------------------------------------------------------

  function retryPhoto() {
    const photo = session.queue[0];
    if (!photo || state() !== "error") return;
    imageEntry(photo, true);
    say(`loading ${photo.file_name} again`);
    show();
  }

  // Put the photo behind the annotator's others (the server keeps the order): it comes back later.
  async function skipPhoto() {
    const photo = session.queue[0];
    if (!photo || session.busy || state() !== "error") return;
    if (!session.online) { say("skipping waits until the server is back"); return; }
    session.busy = true;
    await drained();
    try {
      const reply = await request("POST", "/api/boxes/skip", { annotator: session.annotator, image_id: photo.image_id });
      session.busy = false;
      images.delete(photo.image_id);  // asked afresh when it comes back
      sync(reply);
      say(session.queue.length && session.queue[0].image_id === photo.image_id
        ? `no other photo to box now: trying ${photo.file_name} again`
        : `photo ${photo.file_name} skipped for now: it comes back later`);
    } catch (error) {
      session.busy = false;
      say(`skip failed: ${error.message}`);
      if (error.payload && error.payload.state) sync(error.payload.state); else await resync();
    }
  }

  // ---- undo --------------------------------------------------------------------------------

  // Take back the last click, else the box waiting for its category, else the last box or
  // "no more objects" (at once when it was never sent, else by the server).
  async function undo() {
    if (session.busy || !session.annotator || !["ready", "category", "waiting", "done", "error"].includes(state())) return;
    if (session.clicks.length) {
      session.clicks.pop();
      say(session.clicks.length ? `${session.clicks.length} of 4 extreme points` : "click undone");
      updateMarks();
      drawOverlay();
      return;
    }
    if (session.pending) { clearClicks(); say("box dropped"); return; }
    const last = session.outbox[session.outbox.length - 1];
    if (last && !last.attempted && last.image) {
      session.outbox.pop();
      saveOutbox();
      if (last.kind === "box") {
        last.image.boxes = last.image.boxes.filter((b) => b !== last.box);
        say("last box undone");
      } else {
        session.queue.unshift(last.image);
        say("photo reopened: its boxes are back");
      }
      saveView();
      startClock(performance.now());
      show();
      return;
    }
    if (state() === "error" && session.queue.length && session.queue[0].boxes.length) {
      say("the boxes of a photo that did not load are not undone unseen: R tries it again, S skips it for now");
      return;
    }
    if (!session.online) { say("undo waits until the server is back"); return; }
    session.busy = true;
    setState("undoing");
    await drained();
    try {
      const reply = await request("POST", "/api/boxes/undo", { annotator: session.annotator });
      session.busy = false;
      sync(reply);
      startClock(performance.now());
      if (reply.undone && reply.undone.kind === "box") {
        say(reply.undone.mine === false ? `last box undone (drawn by ${reply.undone.drawn_by})` : "last box undone");
      } else if (reply.undone) say("photo reopened: its boxes are back");
      else say(reply.refused ? `nothing undone: the photo finished last cannot come back (${reply.refused})` : "nothing to undo");
    } catch (error) {
      session.busy = false;
      say(`undo failed: ${error.message}`);
      await resync();
    }
  }

  // ---- keys and buttons --------------------------------------------------------------------

  function setBoxesHidden(hidden) {
    if (session.hideBoxes === hidden) return;
    session.hideBoxes = hidden;
    drawBase();
  }

  function onKey(event) {
    if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "?") { event.preventDefault(); toggleHelp(); return; }
    if (key === "Escape") { if (!$("help").hidden) toggleHelp(false); else clearClicks(); return; }
    if (/^[1-9]$/.test(key)) {
      const category = visibleCategories()[Number(key) - 1];
      if (category && !event.repeat) chooseCategory(category.id, performance.now());
    } else if (key === "/") {
      event.preventDefault();
      openFilter();
    } else if (UNDO_KEYS.has(key)) {
      event.preventDefault();
      if (!event.repeat) undo();
    } else if (key === "n") {
      if (!event.repeat) finishPhoto();
    } else if (key === "h") {
      setBoxesHidden(true);
    } else if (key === "r" && state() === "error") {
      retryPhoto();
    } else if (key === "s" && state() === "error") {
      skipPhoto();
    }
  }

  function onFilterKey(event) {
    if (event.key === "Enter") {
      event.preventDefault();
      const first = visibleCategories()[0];
      closeFilter();
      if (first) chooseCategory(first.id, performance.now());
    } else if (event.key === "Escape") {
      event.preventDefault();
      closeFilter();
    }
  }

  function start(name) {
    session.annotator = name;
    $("who").textContent = name;
    $("login").hidden = true;
    $("switch-annotator").hidden = false;
    loadView();  // the photos on hand and the category of a previous visit: drawing goes on offline
    renderCategories();
    session.outbox = loadOutbox();  // what a previous visit could not send
    updatePending();
    setState("loading");
    if (session.queue.length) {
      prefetch();
      show();
    }
    if (session.outbox.length) pump(); else resync();
  }

  async function switchAnnotator() {
    $("switch-annotator").blur();
    if (!session.annotator || session.busy) return;
    session.busy = true;
    await drained();
    session.busy = false;
    session.epoch += 1;
    clearTimeout(session.recheck);
    Object.assign(session, {
      annotator: null, queue: [], outbox: [], summary: null, clicks: [], pending: null, shown: null, categories: [], category: null,
    });
    window.Pointsup.forgetName();
    for (const id of ["boxing", "done", "switch-annotator"]) $(id).hidden = true;
    window.Pointsup.showLogin();
  }

  function init() {
    document.addEventListener("keydown", onKey);
    document.addEventListener("keyup", (event) => { if (event.key.toLowerCase() === "h") setBoxesHidden(false); });
    window.addEventListener("resize", () => { session.layoutFor = ""; if (canDraw()) show(); });
    const overlay = $("box-overlay");
    overlay.addEventListener("pointerdown", onPointerDown);
    overlay.addEventListener("pointermove", onPointerMove);
    overlay.addEventListener("pointerup", onPointerUp);
    overlay.addEventListener("pointercancel", () => { session.down = null; session.drag = null; drawOverlay(); });
    overlay.addEventListener("pointerleave", onPointerLeave);
    overlay.addEventListener("contextmenu", (event) => event.preventDefault());
    const filter = $("category-filter");
    filter.addEventListener("input", () => { session.filter = filter.value; renderCategories(); });
    filter.addEventListener("keydown", onFilterKey);
    filter.addEventListener("blur", () => { if (!session.filter) filter.hidden = session.categories.length <= 9; });
    onButton("undo", undo);
    onButton("clear", clearClicks);
    onButton("finish", finishPhoto);
    onButton("help-button", () => toggleHelp());
    onButton("retry", retryPhoto);
    onButton("skip", skipPhoto);
    document.addEventListener("visibilitychange", onVisibility);
    onButton("help-close", () => toggleHelp(false));
    const hide = $("hide-button");
    hide.addEventListener("pointerdown", () => setBoxesHidden(true));
    for (const type of ["pointerup", "pointerleave", "pointercancel"]) hide.addEventListener(type, () => setBoxesHidden(false));
    $("switch-annotator").addEventListener("click", switchAnnotator);
    window.Pointsup.login(start);
  }

  init();
})();
