import type { HttpResponse } from './http-routes.js';

/**
 * The frame of the server's own web pages (consent, registration, restoring an account): HTML escaped
 * by the caller with `escapeHtml`, no script, no external resources, and a CSP that allows only forms
 * posting back to the server itself.
 */

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function htmlPage(status: number, title: string, body: string, lang = 'en'): HttpResponse {
  return {
    status,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    },
    body: `<!doctype html>
<html lang="${escapeHtml(lang)}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>${escapeHtml(title)}</title></head>
<body><h1>${escapeHtml(title)}</h1>
${body}
</body></html>
`,
  };
}
