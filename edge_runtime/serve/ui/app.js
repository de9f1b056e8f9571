// The keras2edge web page: try the served model from a browser.
//
// Plain JavaScript, no build step, no library, nothing loaded from anywhere but this
// server (the page is sent with Content-Security-Policy: default-src 'self').
// Everything the model sees goes through the server's own decoding: drawings, files
// and camera frames are sent as PNG/JPEG bodies to /v1/predict, so a drawn digit gets
// exactly the digit preprocessing the command line applies to a photo of one.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "keras2edge.token";
  const TOP_K = 5;
  const SENT_AS_IS = ["image/png", "image/jpeg"]; // what /v1/predict decodes; other types are re-encoded
  const REENCODE_MAX_SIDE = 2048;
  const CAMERA_MAX_SIDE = 640; // camera frames are sent at most this large (PNG, exact pixels)
  const PREVIEW_MAX_SIDE = 240;
  const PEN_WIDTH = 20; // on the 280 x 280 canvas: about MNIST's stroke width relative to the digit

  class Problem extends Error {}
  class TokenRefused extends Problem {}

  let info = null; // the /v1/model answer
  let queued = null; // the newest request waiting to be sent (older waiting ones are dropped)
  let running = false; // one request at a time: the answers come back in order
  let generation = 0; // bumped when an input is cleared: answers for older requests are ignored
  let lastAnnounced = "";

  // ------------------------------------------------------------------ server calls

  function storedToken() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    const token = storedToken();
    if (token) headers.set("Authorization", "Bearer " + token);
    let response;
    try {
      response = await fetch(path, { ...options, headers, cache: "no-store" });
    } catch (err) {
      throw new Problem(`Cannot reach the server (${err.message}). Is it still running?`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null; // not JSON: the status line says enough
    }
    const message = body && body.error ? body.error : response.statusText;
    if (response.status === 401) throw new TokenRefused(message);
    if (!response.ok) throw new Problem(`The server answered ${response.status}: ${message}`);
    return body;
  }

  // ------------------------------------------------------------------ messages

  function setStatus(text, problem = false) {
    $("status").textContent = text;
    $("status").classList.toggle("problem", problem);
  }

  function showError(text) {
    $("error").textContent = text;
  }

  function report(err) {
    if (err instanceof TokenRefused) {
      askForToken(true, err.message);
    } else {
      showError(err.message);
    }
  }

  // ------------------------------------------------------------------ token

  function askForToken(refused, message) {
    const hadToken = storedToken() !== null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-form").hidden = false;
    $("token-error").textContent =
      refused && hadToken
        ? `The server refused this token (401: ${message}). Check the token file the server was started with and type it again.`
        : "";
    setStatus("The server needs its token.");
    $("token").value = "";
    $("token").focus();
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-form").hidden = true;
    $("token-error").textContent = "";
    setStatus("Checking the token…");
    loadModel(true);
  });

  // ------------------------------------------------------------------ the model

  async function loadModel(focus) {
    try {
      info = await api("v1/model");
    } catch (err) {
      if (err instanceof TokenRefused) {
        askForToken(true, err.message);
      } else {
        setStatus(`Cannot load the model description. ${err.message}`, true);
      }
      return;
    }
    showModel();
    if (focus) $("inputs-heading").focus();
  }

  function showModel() {
    const manifest = info.manifest || {};
    const source = (manifest.source_model && manifest.source_model.name) || "";
    const artifact = (manifest.artifact && manifest.artifact.name) || info.path.split(/[\\/]/).pop();
    const name = source ? `${source} · ${artifact}` : artifact;
    document.title = `${name} · keras2edge`;
    $("title-model").textContent = source || artifact;
    $("info-name").textContent = `${name} (${info.format}, ${formatBytes(info.bytes)})`;
    $("info-input").textContent = info.input.description;
    const labels = info.class_labels;
    const shown = labels.slice(0, 20).join(", ");
    $("info-classes").textContent = `${labels.length}: ${shown}${labels.length > 20 ? ", …" : ""}`;
    $("info-backend").textContent = info.backend;
    $("info-sha").textContent = info.sha256;

    const isImage = info.input.kind === "image";
    $("draw").hidden = !(isImage && info.input.digits);
    $("image").hidden = !isImage;
    $("features").hidden = isImage;
    if (!isImage) buildFeatureFields();
    $("app").hidden = false;
    setStatus(`Ready: ${name}.`);
  }

  function formatBytes(bytes) {
    if (bytes >= 1048576) return `${(bytes / 1048576).toFixed(1)} MiB`;
    if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
    return `${bytes} bytes`;
  }

  // ------------------------------------------------------------------ requests and results

  function submit(job) {
    job.generation = generation;
    queued = job;
    if (!running) pump();
  }

  async function pump() {
    running = true;
    $("result").setAttribute("aria-busy", "true");
    while (queued) {
      const job = queued;
      queued = null;
      let ok = false;
      try {
        const { body, type } = await job.body();
        const started = performance.now();
        const answer = await api("v1/predict", { method: "POST", headers: { "Content-Type": type }, body });
        const roundTrip = performance.now() - started;
        ok = true;
        if (job.generation === generation) {
          showError("");
          showResult(answer, roundTrip, job.quiet);
        }
      } catch (err) {
        if (job.generation === generation) report(err);
      }
      if (job.then) job.then(ok);
    }
    running = false;
    $("result").setAttribute("aria-busy", "false");
  }

  function percent(p) {
    return `${(p * 100).toFixed(1)} %`;
  }

  function showResult(answer, roundTrip, quiet) {
    const probabilities = answer.probabilities[0];
    const labels = info.class_labels;
    const top = probabilities
      .map((p, i) => [p, i])
      .sort((a, b) => b[0] - a[0])
      .slice(0, Math.min(TOP_K, probabilities.length));
    const label = answer.labels[0];
    $("prediction").textContent = label;
    $("confidence").textContent = percent(top[0][0]);
    const bars = top.map(([p, i]) => {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = labels[i];
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = `${(p * 100).toFixed(2)}%`;
      bar.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = percent(p);
      item.append(name, bar, value);
      return item;
    });
    $("bars").replaceChildren(...bars);
    const latency = answer.latency_ms;
    $("timing").textContent =
      `Server ${latency.server.toFixed(1)} ms (model ${latency.inference.toFixed(1)} ms), ` +
      `round trip ${roundTrip.toFixed(1)} ms, ${answer.backend}.`;
    if (!quiet) {
      const box = $("result").getBoundingClientRect();
      if (box.top < 0 || box.bottom > window.innerHeight) $("result").scrollIntoView({ block: "nearest" });
    }
    const sentence = `Prediction: ${label}, ${percent(top[0][0])}`;
    if (!quiet || sentence.split(",")[0] !== lastAnnounced.split(",")[0]) {
      $("announce").textContent = sentence;
      lastAnnounced = sentence;
    }
  }

  function clearResult() {
    generation += 1;
    queued = null;
    $("prediction").textContent = "";
    $("confidence").textContent = "Nothing classified yet.";
    $("bars").replaceChildren();
    $("timing").textContent = "";
    lastAnnounced = "";
    showError("");
  }

  function canvasBlob(canvas) {
    return new Promise((resolve, reject) => {
      canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Problem("The browser could not encode the image."))), "image/png");
    });
  }

  // ------------------------------------------------------------------ drawing

  const canvas = $("canvas");
  const pen = canvas.getContext("2d");
  let drawing = null; // the pointer drawing now
  let last = null;

  function blankCanvas() {
    pen.fillStyle = "#000";
    pen.fillRect(0, 0, canvas.width, canvas.height);
    pen.strokeStyle = "#fff";
    pen.fillStyle = "#fff";
    pen.lineWidth = PEN_WIDTH;
    pen.lineCap = "round";
    pen.lineJoin = "round";
  }

  function canvasPoint(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / box.width,
      y: ((event.clientY - box.top) * canvas.height) / box.height,
    };
  }

  function sendDrawing(quiet) {
    submit({ quiet, body: async () => ({ body: await canvasBlob(canvas), type: "image/png" }) });
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = event.pointerId;
    last = canvasPoint(event);
    pen.beginPath();
    pen.arc(last.x, last.y, PEN_WIDTH / 2, 0, 2 * Math.PI);
    pen.fill();
    sendDrawing(true);
  });

  canvas.addEventListener("pointermove", (event) => {
    if (event.pointerId !== drawing) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    pen.beginPath();
    pen.moveTo(last.x, last.y);
    for (const e of events.length ? events : [event]) {
      last = canvasPoint(e);
      pen.lineTo(last.x, last.y);
    }
    pen.stroke();
    sendDrawing(true);
  });

  function endStroke(event) {
    if (event.pointerId !== drawing) return;
    drawing = null;
    sendDrawing(false);
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  $("clear").addEventListener("click", () => {
    blankCanvas();
    clearResult();
  });

  // ------------------------------------------------------------------ files, photos, drops

  function showSent(source, note) {
    const preview = $("preview");
    const width = source.videoWidth || source.width;
    const height = source.videoHeight || source.height;
    // Small images are enlarged (without smoothing, to show their pixels), large ones shrunk.
    const scale = PREVIEW_MAX_SIDE / Math.max(width, height);
    preview.width = Math.max(1, Math.round(width * scale));
    preview.height = Math.max(1, Math.round(height * scale));
    const context = preview.getContext("2d");
    context.imageSmoothingEnabled = scale < 1;
    context.drawImage(source, 0, 0, preview.width, preview.height);
    preview.hidden = false;
    $("sent-heading").hidden = false;
    $("sent-note").textContent = note;
  }

  async function reencode(bitmap, maxBytes) {
    let scale = Math.min(1, REENCODE_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    for (;;) {
      const copy = document.createElement("canvas");
      copy.width = Math.max(1, Math.round(bitmap.width * scale));
      copy.height = Math.max(1, Math.round(bitmap.height * scale));
      const context = copy.getContext("2d");
      context.fillStyle = "#fff"; // as the server composites transparency
      context.fillRect(0, 0, copy.width, copy.height);
      context.drawImage(bitmap, 0, 0, copy.width, copy.height);
      const blob = await new Promise((resolve) => copy.toBlob(resolve, "image/jpeg", 0.92));
      if (blob && (blob.size <= maxBytes || copy.width <= 64)) return { blob, width: copy.width, height: copy.height };
      scale /= 2;
    }
  }

  async function classifyFile(file) {
    if (!file) return;
    clearResult();
    let bitmap = null;
    try {
      bitmap = await createImageBitmap(file);
    } catch (err) {
      bitmap = null; // the server may still read it; it says so if not
    }
    const limit = info.server.max_body_bytes;
    const size = `${formatBytes(file.size)}${bitmap ? `, ${bitmap.width}×${bitmap.height}` : ""}`;
    let body = file;
    let type = file.type;
    let note = `${file.name} (${size}), sent as it is; the server fits it to the model as the command line does.`;
    if (!SENT_AS_IS.includes(type) || file.size > limit) {
      if (!bitmap) {
        showError(`${file.name}: this browser cannot read it as an image; try a PNG or JPEG file.`);
        return;
      }
      const copy = await reencode(bitmap, limit);
      body = copy.blob;
      type = "image/jpeg";
      const why = file.size > limit ? `larger than the server's ${formatBytes(limit)} limit` : `${file.type || "unknown type"}`;
      note = `${file.name} (${size}, ${why}) was re-encoded in the browser as a ${copy.width}×${copy.height} JPEG.`;
    }
    if (bitmap) showSent(bitmap, note);
    else $("sent-note").textContent = note;
    submit({ quiet: false, body: async () => ({ body, type }) });
  }

  for (const id of ["file", "photo"]) {
    $(id).addEventListener("change", (event) => {
      classifyFile(event.target.files[0]);
    });
  }

  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    classifyFile(event.dataTransfer.files[0]);
  });
  // A file dropped next to the box must not replace the page.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => {
      if (event.dataTransfer && [...event.dataTransfer.types].includes("Files")) event.preventDefault();
    });
  }

  // ------------------------------------------------------------------ live camera

  const video = $("video");
  let stream = null;

  function cameraButtons(on) {
    $("cam-start").disabled = on;
    $("cam-shot").disabled = !on;
    $("cam-loop").disabled = !on;
    $("cam-stop").disabled = !on;
    if (!on) $("cam-loop").checked = false;
    video.hidden = !on;
  }

  function shootFrame() {
    if (!stream || !video.videoWidth) return;
    const scale = Math.min(1, CAMERA_MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
    const frame = document.createElement("canvas");
    frame.width = Math.round(video.videoWidth * scale);
    frame.height = Math.round(video.videoHeight * scale);
    frame.getContext("2d").drawImage(video, 0, 0, frame.width, frame.height);
    const preview = $("preview");
    preview.width = frame.width;
    preview.height = frame.height;
    preview.getContext("2d").drawImage(frame, 0, 0);
    preview.hidden = false;
    $("sent-heading").hidden = false;
    $("sent-note").textContent = `A ${frame.width}×${frame.height} camera frame, sent as PNG.`;
    const loop = $("cam-loop").checked;
    submit({
      quiet: loop,
      body: async () => ({ body: await canvasBlob(frame), type: "image/png" }),
      then: (ok) => {
        if (!ok) $("cam-loop").checked = false; // an error stops the loop instead of repeating it
        if ($("cam-loop").checked && stream) requestAnimationFrame(shootFrame);
      },
    });
  }

  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    $("cam-note").textContent = "Uses this device's camera; nothing leaves it but the frames you classify.";
  } else {
    $("cam-note").textContent =
      "The browser allows the live camera only on a secure page (https, or localhost on the device itself). " +
      "Here, use “Take a photo”.";
    $("cam-start").disabled = true;
  }

  $("cam-start").addEventListener("click", async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
      video.srcObject = stream;
      await video.play();
      cameraButtons(true);
      $("cam-shot").focus();
    } catch (err) {
      stream = null;
      showError(`The camera could not be started (${err.name}: ${err.message}).`);
    }
  });
  $("cam-shot").addEventListener("click", () => {
    clearResult();
    shootFrame();
  });
  $("cam-loop").addEventListener("change", () => {
    if ($("cam-loop").checked && !running) shootFrame();
  });
  $("cam-stop").addEventListener("click", () => {
    for (const track of stream ? stream.getTracks() : []) track.stop();
    stream = null;
    video.srcObject = null;
    cameraButtons(false);
    $("cam-start").focus();
  });

  // ------------------------------------------------------------------ feature models

  function featureInputs() {
    return [...$("feature-fields").querySelectorAll("input")];
  }

  function buildFeatureFields() {
    const count = info.input.shape[0];
    const names = info.input.feature_names || [];
    const fields = [];
    for (let i = 0; i < count; i += 1) {
      const field = document.createElement("div");
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.id = `feature-${i}`;
      input.type = "number";
      input.step = "any";
      input.required = true;
      input.inputMode = "decimal";
      label.htmlFor = input.id;
      label.textContent = names[i] || `feature ${i + 1}`;
      field.append(label, input);
      fields.push(field);
    }
    $("feature-fields").replaceChildren(...fields);
  }

  $("paste").addEventListener("input", () => {
    const text = $("paste").value.trim();
    if (!text) return;
    const values = text.split(/[\s,;]+/).filter((v) => v !== "");
    const inputs = featureInputs();
    if (values.length !== inputs.length) {
      showError(`The pasted row has ${values.length} values; the model takes ${inputs.length}.`);
      return;
    }
    showError("");
    values.forEach((value, i) => {
      inputs[i].value = value;
    });
  });

  $("features").addEventListener("submit", (event) => {
    event.preventDefault();
    const row = featureInputs().map((input) => Number(input.value));
    clearResult();
    submit({ quiet: false, body: async () => ({ body: JSON.stringify({ features: [row] }), type: "application/json" }) });
  });

  // ------------------------------------------------------------------ start

  blankCanvas();
  loadModel(false);
})();
