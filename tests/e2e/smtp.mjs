// A mail sink for browser tests: a tiny SMTP server on loopback that accepts every message and
// keeps it, so a test can open the links the server mails (invitations, password resets).
// Speaks just enough SMTP for lettre: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.

import net from 'node:net';
import { waitFor } from './harness.mjs';

/** The body of a single-part message, its transfer encoding undone. */
function decode(raw) {
  const at = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, at).replace(/\r\n[ \t]+/g, ' ');
  const headers = Object.fromEntries(
    head
      .split('\r\n')
      .map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()])
      .filter(([k]) => k),
  );
  let body = raw.slice(at + 4);
  const enc = (headers['content-transfer-encoding'] || '').toLowerCase();
  if (enc === 'base64') body = Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  if (enc === 'quoted-printable') {
    const bytes = body.replace(/=\r\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_, x) => String.fromCharCode(parseInt(x, 16)));
    body = Buffer.from(bytes, 'latin1').toString('utf8');
  }
  return { headers, body };
}

/** Starts the sink; `messages` holds {to[], subject, body}; `link()` waits for a mailed link. */
export async function startSmtp() {
  const messages = [];
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = '';
    let data = false;
    let to = [];
    const say = (line) => socket.write(`${line}\r\n`);
    say('220 e2e-smtp ready');
    socket.on('data', (chunk) => {
      buf += chunk.toString('latin1');
      for (;;) {
        if (data) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end < 0) return;
          const raw = Buffer.from(buf.slice(0, end).replace(/(^|\r\n)\.\./g, '$1.'), 'latin1').toString('utf8');
          buf = buf.slice(end + 5);
          data = false;
          const { headers, body } = decode(raw);
          messages.push({ to, subject: headers.subject || '', body });
          to = [];
          say('250 queued');
          continue;
        }
        const eol = buf.indexOf('\r\n');
        if (eol < 0) return;
        const line = buf.slice(0, eol);
        buf = buf.slice(eol + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') socket.write('250-e2e-smtp\r\n250 8BITMIME\r\n');
        else if (verb === 'RCPT') {
          to.push(((line.match(/<([^>]*)>/) || [])[1] || '').toLowerCase());
          say('250 OK');
        } else if (verb === 'DATA') {
          data = true;
          say('354 go on');
        } else if (verb === 'QUIT') {
          say('221 bye');
          socket.end();
          return;
        } else if (['HELO', 'MAIL', 'RSET', 'NOOP'].includes(verb)) say('250 OK');
        else say('502 not implemented');
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    messages,
    /** The token (`<prefix>…`) of the first mail to `to` whose subject contains `subject`. */
    token(to, subject, prefix) {
      const re = new RegExp(`#token=(${prefix}[A-Za-z0-9]+)`);
      return waitFor(
        () => {
          const m = messages.find((x) => x.to.includes(to) && x.subject.includes(subject) && re.test(x.body));
          return m && m.body.match(re)[1];
        },
        { timeout: 30_000, what: `mail "${subject}" to ${to}` },
      );
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
