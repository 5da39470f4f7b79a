"use strict";
// The search page: one photo in, POST /api/search, the crop box over the photo, the results as a grid.
// Plain JS, no build step, nothing from a CDN. A token in the page's URL (?token=...) is sent with each request.
const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const withToken = (url) => (TOKEN ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN) : url);
const headers = () => (TOKEN ? { Authorization: "Bearer " + TOKEN } : {});
let photoUrl = null;
let lastFile = null;  // searched again when an option changes
let busy = false;
let pending = null;   // a search asked for while one was running: run next

async function health() {
  try {
    const response = await fetch("/api/health", { headers: headers() });
    const data = await response.json();
    if (response.ok) {
      $("catalogue").textContent = `${data.catalogue.toLocaleString()} catalogue photos` +
        (data.rerank ? " · re-ranked by a similarity model" : "");
      if (!data.rerank) $("rerank").disabled = true;
      if (!data.crop) $("crop").disabled = true;
    } else {
      $("catalogue").textContent = data.error || response.statusText;
    }
  } catch (error) {
    $("catalogue").textContent = "server not reachable";
  }
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function showPhoto(file) {
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  $("photo").src = photoUrl;
  $("box").hidden = true;
  $("query-name").textContent = file.name || "photo";
  $("framing").textContent = "";
  $("query").hidden = false;
  $("pick").hidden = true;
}

function drawBox(data) {
  const box = $("box");
  if (!data.box || !data.size) {
    box.hidden = true;
    $("framing").textContent = data.note ? `whole photo (${data.note})` : "whole photo searched (no crop)";
    return;
  }
  const [w, h] = data.size;
  const [x0, y0, x1, y1] = data.box;
  box.style.left = (100 * x0 / w) + "%";
  box.style.top = (100 * y0 / h) + "%";
  box.style.width = (100 * (x1 - x0) / w) + "%";
  box.style.height = (100 * (y1 - y0) / h) + "%";
  box.dataset.box = data.box.join(",");
  box.hidden = false;
  const sure = data.crop_confidence != null ? `, confidence ${data.crop_confidence.toFixed(2)}` : "";
  $("framing").textContent = `the red box is what was searched${sure}` + (data.note ? ` — ${data.note}` : "");
}

function fileName(path) {
  return path.split(/[\\/]/).pop();
}

function showResults(data) {
  const list = $("results");
  list.replaceChildren();
  $("order").textContent = data.reranked ? "(re-ranked)" : "(backbone order)";
  const top = Math.max(...data.results.map((hit) => hit.score), 1e-6);
  for (const hit of data.results) {
    const item = document.createElement("li");
    item.className = "result";
    item.tabIndex = 0;
    item.dataset.id = hit.id;
    item.dataset.path = hit.path;
    const img = document.createElement("img");
    img.alt = fileName(hit.path);
    img.src = withToken(`/api/catalog/${hit.id}`);
    const meta = document.createElement("div");
    meta.className = "meta";
    const row = document.createElement("div");
    row.className = "row";
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = "#" + hit.rank;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    score.title = `score ${hit.score.toFixed(4)} (backbone cosine ${hit.faiss_score.toFixed(4)})`;
    row.append(rank, score);
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = fileName(hit.path);
    name.title = hit.path;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = Math.max(2, Math.min(100, 100 * hit.score / top)) + "%";
    bar.append(fill);
    meta.append(row, name, bar);
    if (hit.kept_nearest) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "nearest by looks";
      badge.title = "kept on the first page for being among the backbone's nearest matches";
      name.prepend(badge, " ");
    }
    item.append(img, meta);
    item.addEventListener("click", () => openLarge(hit));
    item.addEventListener("keydown", (event) => { if (event.key === "Enter") openLarge(hit); });
    list.append(item);
  }
  $("results-panel").hidden = false;
}

function openLarge(hit) {
  $("large-img").src = withToken(`/api/catalog/${hit.id}?large=true`);
  $("large-caption").textContent = `#${hit.rank} · score ${hit.score.toFixed(3)} · ${hit.path}`;
  $("large").showModal();
}

async function search(file) {
  if (!file) return;
  if (busy) {
    pending = file;
    return;
  }
  if (!file.type.startsWith("image/") && file.type !== "") {
    status(`${file.name} is not an image`, true);
    return;
  }
  busy = true;
  if (file !== lastFile) showPhoto(file);
  lastFile = file;
  $("results-panel").hidden = true;
  status("Searching…");
  const form = new FormData();
  form.append("image", file, file.name || "photo.jpg");
  form.append("k", $("k").value);
  form.append("crop", $("crop").checked && !$("crop").disabled);
  form.append("rerank", $("rerank").checked && !$("rerank").disabled);
  const started = performance.now();
  try {
    const response = await fetch("/api/search", { method: "POST", body: form, headers: headers() });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || response.statusText);
    drawBox(data);
    showResults(data);
    status(`${data.results.length} results in ${Math.round(performance.now() - started)} ms`);
  } catch (error) {
    status(error.message, true);
  } finally {
    busy = false;
    if (pending) {
      const next = pending;
      pending = null;
      search(next);
    }
  }
}

function reset() {
  lastFile = null;
  $("pick").hidden = false;
  $("query").hidden = true;
  $("results-panel").hidden = true;
  $("file").value = "";
  $("camera").value = "";
}

document.addEventListener("DOMContentLoaded", () => {
  health();
  for (const id of ["file", "camera"]) $(id).addEventListener("change", (event) => search(event.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    search(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])][0];
    if (file) search(file);
  });
  $("again").addEventListener("click", reset);
  $("options").addEventListener("change", () => { if (lastFile) search(lastFile); });
  $("options").addEventListener("submit", (event) => event.preventDefault());
  drop.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") $("file").click(); });
  $("large").addEventListener("click", (event) => { if (event.target === $("large")) $("large").close(); });
});
