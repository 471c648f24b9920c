// framechain web chat: one conversation per video; live over a websocket, actions by POST.
"use strict";

const list = document.getElementById("messages");
const threads = document.getElementById("threads");
const notice = document.getElementById("notice");
const banner = document.getElementById("connection");
const form = document.getElementById("composer");
const text = document.getElementById("text");
const picture = document.getElementById("picture");
let thread = "";
let socket = null;
let retry = 500;
const shown = new Map(); // message id -> version
const UNTITLED = "Untitled video"; // as bot/web/messages.py titles a conversation without a prompt

function say(notes) {
  const text = notes.join("\n");
  notice.textContent = text;
  // A note is for the moment, like a toast: it goes after a while unless another replaced it.
  if (text) setTimeout(() => notice.textContent === text && (notice.textContent = ""), 8000);
}

async function post(path, body) {
  const headers = { "X-Framechain": "1" };
  if (!(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(path, { method: "POST", headers, body, credentials: "same-origin" });
  if (response.status === 413) return { notes: ["That file is too large. Please send a smaller picture."] };
  if (!response.ok) return { notes: [(await response.text()) || `The server answered ${response.status}.`] };
  return response.json();
}

function nearBottom() {
  const main = list.parentElement;
  return main.scrollHeight - main.scrollTop - main.clientHeight < 120;
}

function scrollDown() {
  const main = list.parentElement;
  main.scrollTop = main.scrollHeight;
}

function render(message) {
  const item = document.createElement("li");
  item.className = `msg ${message.author}`;
  item.dataset.id = message.id;
  item.dataset.version = message.version;
  for (const media of message.media) {
    if (media.kind === "video") {
      const video = document.createElement("video");
      video.src = media.url;
      video.controls = true;
      video.preload = "metadata";
      video.playsInline = true;
      video.setAttribute("aria-label", message.text.split("\n")[0] || "video");
      item.append(video);
    } else {
      const img = document.createElement("img");
      img.src = media.url;
      img.alt = message.text.split("\n")[0] || "picture";
      item.append(img);
    }
  }
  if (message.text) {
    const body = document.createElement("div");
    body.className = "text";
    body.textContent = message.text;
    item.append(body);
  }
  if (message.note) {
    const note = document.createElement("div");
    note.className = "note";
    note.textContent = message.note;
    item.append(note);
  }
  if (message.controls.length) {
    const row = document.createElement("div");
    row.className = "controls";
    for (const control of message.controls) {
      if (!control.data) {
        // A label among the buttons (◀ take 1 of 2 ▶): nothing to press.
        const label = document.createElement("span");
        label.className = "control-label";
        label.textContent = control.label;
        row.append(label);
        continue;
      }
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = control.label;
      button.dataset.control = control.data;
      button.addEventListener("click", () => press(item, control.data));
      row.append(button);
    }
    item.append(row);
  }
  return item;
}

function upsert(message) {
  const known = shown.get(message.id);
  if (known !== undefined && known >= message.version) return;
  shown.set(message.id, message.version);
  const old = list.querySelector(`li[data-id="${message.id}"]`);
  if (message.deleted) {
    if (old) old.remove();
    return;
  }
  const bottom = nearBottom();
  const item = render(message);
  if (old) {
    // A playing video keeps playing: only its caption, note and buttons change.
    const oldVideo = old.querySelector("video");
    const newVideo = item.querySelector("video");
    if (oldVideo && newVideo && oldVideo.getAttribute("src") === newVideo.getAttribute("src")) newVideo.replaceWith(oldVideo);
    old.replaceWith(item);
  } else {
    // In id order: a message can arrive live before the history that holds the earlier ones.
    const later = [...list.children].find((li) => Number(li.dataset.id) > message.id);
    list.insertBefore(item, later || null);
  }
  if (bottom || !old) scrollDown();
}

async function press(item, data) {
  const buttons = item.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true)); // a double click presses once
  try {
    const answer = await post("/api/press", { thread, data, message: item.dataset.id });
    say(answer.notes || []);
  } catch (error) {
    say(["Not sent: the server cannot be reached. Try again in a moment."]);
  }
  // The server's update replaces the buttons; until then, those pressed stay disabled a moment.
  setTimeout(() => buttons.forEach((b) => (b.disabled = false)), 1500);
}

async function loadThreads(select) {
  const response = await fetch("/api/threads", { credentials: "same-origin" });
  if (!response.ok) {
    say([(await response.text()) || `The server answered ${response.status}.`]);
    return;
  }
  const data = await response.json();
  document.getElementById("ops-link").hidden = !data.admin;
  let items = data.threads;
  if (!items.length) {
    const made = await post("/api/threads", {});
    items = [{ id: made.thread, title: UNTITLED }];
  }
  threads.replaceChildren(
    ...items.map((t) => {
      const option = document.createElement("option");
      option.value = t.id;
      option.textContent = t.title;
      return option;
    }),
  );
  const wanted = select || location.hash.replace("#", "");
  const target = items.some((t) => t.id === wanted) ? wanted : items[0].id;
  if (target === thread) threads.value = thread; // only the titles changed
  else open(target);
}

function open(id) {
  thread = id;
  threads.value = id;
  history.replaceState(null, "", `#${id}`);
  list.replaceChildren();
  shown.clear();
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ open: thread }));
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.addEventListener("open", () => {
    retry = 500;
    banner.hidden = true;
    document.body.dataset.connected = "yes";
    if (thread) socket.send(JSON.stringify({ open: thread }));
  });
  socket.addEventListener("message", (event) => {
    const data = JSON.parse(event.data);
    if (data.type === "history" && data.thread === thread) {
      list.replaceChildren();
      shown.clear();
      data.messages.forEach(upsert);
    } else if (data.type === "message" && data.message.thread === thread) {
      upsert(data.message);
    } else if (data.type === "missing" && data.thread === thread) {
      loadThreads("");
    } else if (data.type === "refused") {
      say([data.text]);
    }
  });
  socket.addEventListener("close", () => {
    document.body.dataset.connected = "no";
    banner.hidden = false;
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 4000);
  });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!text.value.trim() && !picture.files.length) return;
  const body = new FormData();
  body.append("thread", thread);
  body.append("text", text.value);
  if (picture.files.length) body.append("picture", picture.files[0]);
  const send = document.getElementById("send");
  send.disabled = true;
  try {
    const answer = await post("/api/send", body);
    say(answer.notes || []);
    text.value = "";
    picture.value = "";
    document.getElementById("attached").textContent = "";
    if (threads.selectedOptions[0] && threads.selectedOptions[0].textContent === UNTITLED) loadThreads(thread);
  } catch (error) {
    say(["Not sent: the server cannot be reached. Try again in a moment."]);
  } finally {
    send.disabled = false;
  }
});

text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});

picture.addEventListener("change", () => {
  document.getElementById("attached").textContent = picture.files.length ? `Picture: ${picture.files[0].name}` : "";
});

threads.addEventListener("change", () => open(threads.value));
document.getElementById("new-thread").addEventListener("click", async () => {
  const made = await post("/api/threads", {});
  await loadThreads(made.thread);
});

loadThreads("").then(connect);
