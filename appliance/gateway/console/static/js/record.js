// A "Record" button: the microphone through MediaRecorder, in the page (nothing fetched). The chat's attachments
// and the transcription panel both use it.

// Makes `button` start and stop a recording; `onRecorded(blob)` gets each one, `onState(text)` says what happens.
export function recordButton(button, onRecorded, onState) {
  let recorder = null;
  if (!window.MediaRecorder || !navigator.mediaDevices) {
    button.disabled = true;
    button.title = "Recording needs a browser with a microphone and a secure origin";
    onState(`${button.title}; use a file instead.`);
    return;
  }
  button.addEventListener("click", async () => {
    if (recorder) { recorder.stop(); return; }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const chunks = [];
      recorder = new MediaRecorder(stream);
      recorder.addEventListener("dataavailable", (e) => chunks.push(e.data));
      recorder.addEventListener("stop", () => {
        stream.getTracks().forEach((t) => t.stop());
        const blob = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
        recorder = null;
        button.textContent = "Record";
        onRecorded(blob);
      });
      recorder.start();
      button.textContent = "Stop recording";
      onState("Recording…");
    } catch (error) {
      onState(`The microphone is not available (${error.message}); use a file instead.`);
    }
  });
}
