// The HTTPS certificate: offer its CA for download, and warn before it expires (GET /tls/status, no key needed).

import { el, clear } from "./dom.js";

function warning(status) {
  const until = new Date(status.not_after).toISOString().slice(0, 10);
  const days = Math.floor(status.days_left);
  const when = status.days_left < 0 ? `expired on ${until}` : days === 0 ? `expires today (${until})`
    : `expires in ${days} day${days === 1 ? "" : "s"} (${until})`;
  const action = status.self_signed || status.ca_url
    ? "renew it on the box with 'appliance tls init --renew', or import a new one with 'appliance tls import'"
    : "import a renewed one on the box with 'appliance tls import'";
  return `This appliance's HTTPS certificate ${when}: ${action}, then 'systemctl reload appliance'.`;
}

export async function showCertificate(link, banner) {
  const response = await fetch("/tls/status", { cache: "no-store" });
  if (!response.ok) return;
  const status = await response.json();
  if (!status.https) return;
  link.hidden = !status.ca_url;
  if (status.expiring) {
    clear(banner, el("span", { text: warning(status) }));
    banner.hidden = false;
  }
}
