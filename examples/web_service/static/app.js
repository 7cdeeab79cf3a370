// The page's whole logic: post the form, follow the job's events, play the video.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("job-form");
const FINAL = ["succeeded", "failed", "canceled", "expired", "invalid"];
let job = null; // {id, state, source}

// The 20 Emoji templates come from the server, which has them from emoclient.
fetch("/templates").then((r) => r.json()).then((ids) => {
  for (const id of ids) $("driven-id").add(new Option(id, id));
});

// EMO needs a voice recording; Emoji a template.
form.addEventListener("change", () => {
  const emoji = form.kind.value === "emoji";
  $("emo-fields").hidden = emoji;
  $("emoji-fields").hidden = !emoji;
  $("audio").required = !emoji;
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  data.delete("kind");
  for (const name of form.kind.value === "emoji" ? ["audio", "style_level", "ratio"] : ["driven_id"]) {
    data.delete(name);
  }
  $("start").disabled = true;
  try {
    const answer = await fetch("/jobs", { method: "POST", body: data });
    const body = await answer.json();
    if (!answer.ok) {
      const later = answer.headers.get("Retry-After");
      say(body.error + (later ? ` (try again in ${later} s)` : ""), true);
      return;
    }
    follow(body.id);
  } finally {
    $("start").disabled = false;
  }
});

function follow(id) {
  if (job) job.source.close();
  job = { id, state: "queued", source: new EventSource(`/jobs/${id}/events`) };
  $("job").hidden = false;
  $("job-id").textContent = id.slice(0, 12);
  $("events").replaceChildren();
  $("video").hidden = true;
  say("");
  show("queued");
  job.source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    show(event.state);
    const item = document.createElement("li");
    const detail = event.message || event.field || "";
    item.textContent = `${event.at.slice(11, 19)} ${event.event} ${detail}`;
    $("events").append(item);
  };
  job.source.addEventListener("done", (message) => {
    job.source.close();
    const snapshot = JSON.parse(message.data);
    show(snapshot.state);
    if (snapshot.video) {
      $("video").src = snapshot.video;
      $("video").hidden = false;
      $("video").play().catch(() => {}); // the browser may want a click first
    } else if (snapshot.error) {
      say(snapshot.error, true);
    }
  });
}

function show(state) {
  job.state = state;
  $("state").textContent = state;
  $("cancel").hidden = FINAL.includes(state);
  const steps = [...$("steps").children];
  const at = steps.findIndex((step) => step.dataset.state === state);
  steps.forEach((step, i) => {
    step.className = i < at || state === "succeeded" ? "done" : i === at ? "now" : "";
  });
  $("steps").classList.toggle("stopped", FINAL.includes(state) && state !== "succeeded");
}

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

async function cancel(keepalive = false) {
  if (!job || FINAL.includes(job.state)) return;
  const answer = await fetch(`/jobs/${job.id}`, { method: "DELETE", keepalive });
  say((await answer.json()).message);
}

$("cancel").addEventListener("click", () => cancel());
// Leaving the page cancels a job that has not started rendering: nothing is billed for it.
// (A job already RUNNING is billed anyway; its video is still saved on the server.)
addEventListener("pagehide", () => cancel(true));
