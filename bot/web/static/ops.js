// The operator page refreshes itself every 10 s, except while a video plays or the tab is hidden.
"use strict";
setInterval(() => {
  const playing = [...document.querySelectorAll("video")].some((v) => !v.paused && !v.ended);
  if (!playing && document.visibilityState === "visible") location.reload();
}, 10000);
