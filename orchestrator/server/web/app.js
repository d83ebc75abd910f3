// The web chat page of `orchestrator serve`: plain JavaScript, no libraries, no CDN.
// It speaks the server's OpenAI-compatible API (streamed chat completions) and reads the
// progress events the server adds to the stream under the top-level "orchestrator" field.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  messages: [],        // the OpenAI conversation sent with every request (follow-ups)
  attached: null,      // {id, filename} of an uploaded file waiting for the next message
  spent: 0,            // dollars spent in this conversation
  busy: false,
  running: null,       // {controller, view} of the request in flight (the stop button aborts it)
};

function apiKey() { return sessionStorage.getItem("orchestrator-api-key") || ""; }

// Without a key, this browser's own random token: a keyless server keeps each token's uploads
// and results apart, so other clients of the server cannot list or read them.
function clientToken() {
  let token = localStorage.getItem("orchestrator-client-token");
  if (!token) {
    const bytes = crypto.getRandomValues(new Uint8Array(24));
    token = "page-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem("orchestrator-client-token", token);
  }
  return token;
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  h["Authorization"] = "Bearer " + (apiKey() || clientToken());
  return h;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function money(value) {
  if (value === null || value === undefined) return "unlimited";
  const n = Number(value);
  if (!isFinite(n)) return String(value);
  if (n === 0) return "$0";
  return n < 0.01 ? "$" + n.toPrecision(2) : "$" + n.toFixed(4);
}

function budgetText(left) {
  const parts = [];
  if (left.usd !== null && left.usd !== undefined) parts.push(money(left.usd));
  if (left.calls !== null && left.calls !== undefined) parts.push(left.calls + " calls");
  if (left.tokens !== null && left.tokens !== undefined) parts.push(left.tokens + " tokens");
  if (left.seconds !== null && left.seconds !== undefined) {
    parts.push(Number(left.seconds).toFixed(0) + " s");
  }
  return parts.length ? parts.join(" · ") : "unlimited";
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (e) { /* not JSON */ }
  return "HTTP " + response.status;
}

// --- models and settings ----------------------------------------------------------------

async function loadModels() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (!response.ok) { showError(await errorText(response)); return; }
    const body = await response.json();
    const select = $("model");
    const chosen = select.value;
    select.replaceChildren();
    for (const model of body.data) {
      const label = model.id === "orchestrator" ? "orchestrator (whole pipeline)"
        : model.id + " (" + model.task + ")";
      select.append(el("option", { value: model.id }, label));
    }
    select.value = chosen || "orchestrator";
    showError("");
  } catch (e) {
    showError("cannot reach the server: " + e);
  }
}

function budgetOverride() {
  const budget = {};
  const usd = $("budget-usd").value.trim();
  const calls = $("budget-calls").value.trim();
  if (usd) budget.usd = usd;
  if (calls) budget.calls = Number(calls);
  return Object.keys(budget).length ? budget : null;
}

// --- files ------------------------------------------------------------------------------

async function upload(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("purpose", "user_data");
  $("attached").textContent = "uploading " + file.name + "...";
  const response = await fetch("/v1/files", { method: "POST", body: form, headers: headers() });
  if (!response.ok) {
    state.attached = null;
    $("attached").textContent = "";
    showError(await errorText(response));
    return;
  }
  const body = await response.json();
  state.attached = { id: body.id, filename: body.filename };
  $("attached").textContent = body.filename;
  showError("");
}

// Files are fetched with the key (or token): they belong to this client.
async function mediaSource(url) {
  const response = await fetch(url, { headers: headers() });
  return URL.createObjectURL(await response.blob());
}

async function showMedia(container, files) {
  for (const file of files || []) {
    const figure = el("figure", { class: "media-item" });
    const src = await mediaSource(file.url);
    if (file.type === "audio") figure.append(el("audio", { controls: "", src: src }));
    else if (file.type === "image") figure.append(el("img", { src: src, alt: file.name }));
    figure.append(el("figcaption", {}, el("a", { href: src, download: file.name }, file.name)));
    container.append(figure);
  }
}

// --- one turn on the page ---------------------------------------------------------------

class TurnView {
  constructor(text, filename) {
    this.root = el("section", { class: "turn" });
    const user = el("div", { class: "user" }, text);
    if (filename) user.append(el("div", { class: "files" }, "attached: " + filename));
    this.state = el("div", { class: "state" }, "waiting for the server...");
    this.plan = el("div", { class: "plan", hidden: "" });
    this.stepsBody = el("tbody");
    this.steps = el("div", { class: "steps-box", hidden: "" }, el("h3", {}, "Steps"),
      el("table", { class: "steps" },
        el("thead", {}, el("tr", {}, el("th", {}, "step"), el("th", {}, "model"),
          el("th", {}, "status"), el("th", { class: "num" }, "seconds"),
          el("th", { class: "num" }, "cost"))),
        this.stepsBody));
    this.answer = el("div", { class: "answer" });
    this.media = el("div", { class: "media" });
    this.cost = el("div", { class: "cost" });
    this.rows = {};
    this.root.append(user, el("div", { class: "assistant" }, this.state, this.plan, this.steps,
      el("h3", {}, "Answer"), this.answer, this.media, this.cost));
    $("conversation").append(this.root);
  }

  scroll() { this.root.scrollIntoView({ block: "end" }); }

  showPlan(plan) {
    const list = el("ol");
    for (const subtask of plan.subtasks) {
      list.append(el("li", { "data-step": subtask.id }, el("span", { class: "task" }, subtask.task),
        " " + subtask.instruction));
    }
    this.plan.replaceChildren(el("h3", {}, "Plan"), list);
    this.plan.hidden = false;
    for (const subtask of plan.subtasks) {  // a row per step, in plan order, before it runs
      const cells = this.row(subtask.id);
      if (!cells.status.textContent) this.setStatus(cells, "waiting");
    }
  }

  row(step) {
    if (!this.rows[step]) {
      const cells = {
        model: el("td", { class: "model" }), status: el("td", { class: "status" }),
        seconds: el("td", { class: "num" }), cost: el("td", { class: "num" }),
      };
      const tr = el("tr", { "data-step": step }, el("td", {}, step), cells.model, cells.status,
        cells.seconds, cells.cost);
      this.stepsBody.append(tr);
      this.rows[step] = cells;
      this.steps.hidden = false;
    }
    return this.rows[step];
  }

  setStatus(cells, status) {
    cells.status.textContent = status;
    cells.status.className = "status status-" + status;
  }

  started(event) {
    const cells = this.row(event.step);
    cells.model.textContent = event.card;
    this.setStatus(cells, "running");
    cells.started = performance.now();
    cells.timer = setInterval(() => {
      cells.seconds.textContent = ((performance.now() - cells.started) / 1000).toFixed(1);
    }, 200);
    this.state.textContent = "running " + event.step + " on " + event.card + "...";
  }

  finished(event) {
    const cells = this.row(event.step);
    clearInterval(cells.timer);
    cells.model.textContent = event.card;
    this.setStatus(cells, event.status);
    const seconds = Number(event.seconds || 0) + Number(event.load_seconds || 0);
    cells.seconds.textContent = seconds.toFixed(2);
    cells.cost.textContent = money(event.usd);
    if (event.error) cells.status.title = event.error;
  }

  // The request was stopped: the server cancels the run when the connection closes (the step
  // in flight finishes and is kept; the rest never starts).
  stopped() {
    for (const cells of Object.values(this.rows)) {
      clearInterval(cells.timer);
      if (["waiting", "running"].includes(cells.status.textContent)) {
        this.setStatus(cells, "stopped");
      }
    }
    this.state.textContent = "stopped";
    this.root.classList.add("stopped");
  }

  budget(event) {
    this.cost.textContent = "this run so far: " + money(event.spent.usd) + ", "
      + event.spent.calls + " calls; left: " + budgetText(event.left);
  }

  async result(event, content) {
    for (const cells of Object.values(this.rows)) clearInterval(cells.timer);
    for (const step of event.steps || []) {
      if (step.status !== "done") this.setStatus(this.row(step.step), step.status);
    }
    this.state.textContent = event.status === "ok" ? "" : "status: " + event.status;
    this.answer.textContent = content.split("\n\nFiles:\n")[0];
    const spent = Number(event.spent.usd || 0);
    state.spent += spent;
    $("spent").textContent = money(state.spent);
    $("left").textContent = budgetText(event.budget_left);
    this.cost.textContent = "cost " + money(spent) + " · " + event.spent.calls + " calls · "
      + Number(event.spent.wall_seconds || 0).toFixed(2) + " s · budget left "
      + budgetText(event.budget_left);
    await showMedia(this.media, event.files);
    this.scroll();
  }
}

// --- sending a request and reading the stream -------------------------------------------

function handle(view, event) {
  switch (event.type) {
    case "run": view.state.textContent = "planning..."; break;
    case "plan": view.showPlan(event.plan); view.state.textContent = "choosing models..."; break;
    case "step_started": view.started(event); break;
    case "step_finished": view.finished(event); break;
    case "budget": view.budget(event); break;
    case "rejected": view.state.textContent = event.message; break;
    case "token": view.state.textContent = event.step + " on " + event.card + " is writing..."; break;
    case "tokens_discarded":
      view.state.textContent = "discarded the text of " + event.step + ": " + event.reason; break;
    default: break;
  }
  view.scroll();
}

async function readStream(response, view) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let content = "";
  let result = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 2);
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        content += delta.content;
        view.answer.textContent = content;  // the answer as it is written (token streaming)
      }
      const event = chunk.orchestrator;
      if (!event) continue;
      if (event.type === "result") result = event; else handle(view, event);
    }
  }
  return { content, result };
}

async function send(text) {
  const attached = state.attached;
  const content = attached
    ? [{ type: "text", text: text }, { type: "file", file: { file_id: attached.id } }]
    : text;
  const view = new TurnView(text, attached && attached.filename);
  $("hint").hidden = true;
  const messages = state.messages.concat([{ role: "user", content: content }]);
  const body = { model: $("model").value, messages: messages, stream: true };
  const budget = budgetOverride();
  if (budget) body.budget = budget;
  const controller = new AbortController();
  state.running = { controller: controller, view: view };
  let response;
  try {
    response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
  } catch (e) {
    if (e.name === "AbortError") { view.stopped(); return; }
    throw e;
  }
  if (!response.ok) {
    view.root.remove();
    throw new Error(await errorText(response));
  }
  clearAttached();
  let answer, result;
  try {
    ({ content: answer, result } = await readStream(response, view));
  } catch (e) {
    // A stopped turn stays on the page but not in the conversation sent next time.
    if (e.name === "AbortError") { view.stopped(); return; }
    throw e;
  }
  state.messages = messages.concat([{ role: "assistant", content: answer }]);
  if (result) await view.result(result, answer);
  else view.answer.textContent = answer;
}

function setBusy(busy) {
  state.busy = busy;
  $("send").disabled = busy;
  $("send").textContent = busy ? "running..." : "send";
  $("stop").hidden = !busy;
  if (!busy) state.running = null;
}

// Abort the request in flight: closing the connection makes the server cancel its run.
function stop() {
  if (state.running) state.running.controller.abort();
}

function clearAttached() {
  state.attached = null;
  $("attached").textContent = "";
  $("file").value = "";
}

// A fresh conversation: nothing earlier (messages, attached file, shown turns) is sent again.
function newChat() {
  stop();
  state.messages = [];
  state.spent = 0;
  clearAttached();
  showError("");
  $("spent").textContent = "$0";
  $("left").textContent = "-";
  for (const turn of document.querySelectorAll(".turn")) turn.remove();
  $("hint").hidden = false;
}

function init() {
  $("api-key").value = apiKey();
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem("orchestrator-api-key", $("api-key").value.trim());
    loadModels();
  });
  $("new-chat").addEventListener("click", newChat);
  $("stop").addEventListener("click", stop);
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) upload(file).catch((e) => showError(String(e)));
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || state.busy) return;
    setBusy(true);
    showError("");
    $("prompt").value = "";
    try {
      await send(text);
    } catch (e) {
      showError(e.message || String(e));
      $("prompt").value = text;
    } finally {
      setBusy(false);
      $("prompt").focus();
    }
  });
  loadModels();
}

document.addEventListener("DOMContentLoaded", init);
