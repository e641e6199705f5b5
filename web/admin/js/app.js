// The console's router and frame: who is signed in (header), which pages they may open (nav),
// and the page of `location.hash` (`#/<path>?<query>`) rendered into <main>.
//
// Pages are modules listed in ./pages/index.js: `{path, title, section, render(ctx)}`. A page of
// the "account" section is for the signed-in account admin; "operator" pages need the operator
// token. A page may set `public: true` to be shown to nobody-signed-in (the operator sign-in).

import { api, refreshSession, session, signOut } from './api.js';
import { h, replace, errorText } from './ui.js';
import pages from './pages/index.js';

const DEFAULT_ACCOUNT_PAGE = 'lots';
const DEFAULT_OPERATOR_PAGE = 'operator/accounts';
const OPERATOR_SIGN_IN = 'operator/sign-in';

const $ = (s) => document.querySelector(s);
const main = $('#admin-main');
let renderSeq = 0;
let pageController = null;

/** `#/seat-review?x=1` → {path: 'seat-review', params}. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const q = raw.indexOf('?');
  const path = (q >= 0 ? raw.slice(0, q) : raw).replace(/\/+$/, '');
  const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  return { path, params };
}

function navigate(hash) {
  const target = hash.startsWith('#') ? hash : `#/${hash.replace(/^\//, '')}`;
  if (location.hash === target) route();
  else location.hash = target;
}

function findPage(path) {
  return pages.find((p) => p.path === path);
}

// A page under another page's path ('invoices/view' under 'invoices') is reached from its
// parent, not from the nav; `nav: false` hides any page from the nav.
function isSubPage(page) {
  return page.nav === false || pages.some((p) => p !== page && page.path.startsWith(`${p.path}/`));
}

// The operator's sign-in page is open to everyone, whatever its module says.
function isPublic(page) {
  return Boolean(page && (page.public || page.path === OPERATOR_SIGN_IN));
}

// A function that is also the session object: pages may call ctx.session() or read ctx.session.kind.
function sessionHandle() {
  const s = () => session();
  return Object.assign(s, session());
}

// ---- header and nav ----

function renderHeader() {
  const s = session();
  $('#who-loading').hidden = true;
  const who = $('#who');
  if (s.kind === 'admin') {
    const u = s.me.user;
    $('#who-name').textContent = `${u.display_name || u.email}${s.isAdmin ? ' (account admin)' : ''}`;
    $('#who-account').textContent = s.me.account.name;
    who.hidden = false;
  } else if (s.kind === 'operator') {
    $('#who-name').textContent = 'Platform operator';
    $('#who-account').textContent = '';
    who.hidden = false;
  } else {
    who.hidden = true;
  }
}

function renderNav(currentPath) {
  const s = session();
  const showAccount = s.kind === 'admin' && s.isAdmin;
  const showOperator = s.kind === 'operator';
  const fill = (ul, section) => {
    replace(
      ul,
      pages
        .filter((p) => p.section === section && !p.hidden && !isPublic(p) && !isSubPage(p))
        .filter((p) => p.nav !== false)
        .map((p) =>
          h(
            'li',
            null,
            h('a', { href: `#/${p.path}`, 'aria-current': p.path === currentPath || currentPath.startsWith(`${p.path}/`) ? 'page' : null }, p.navTitle || p.title),
          ),
        ),
    );
  };
  fill($('#nav-account'), 'account');
  fill($('#nav-operator'), 'operator');
  $('#nav-account-group').hidden = !showAccount;
  $('#nav-operator-group').hidden = !showOperator;
  $('#admin-nav').hidden = !(showAccount || showOperator);
}

// ---- messages in place of a page ----

function message(title, ...body) {
  const h1 = h('h1', { tabindex: '-1' }, title);
  replace(main, h('section', { class: 'card admin-message' }, h1, body));
  document.title = `${title} · Parley admin`;
  h1.focus();
}

function signInUrl() {
  const next = `/admin/${location.hash}`;
  return `/sign-in?next=${encodeURIComponent(next)}`;
}

// ---- routing ----

async function route() {
  const seq = ++renderSeq;
  if (pageController) pageController.abort();
  pageController = new AbortController();
  const s = session();
  let { path, params } = parseHash();

  if (!path) {
    path = s.kind === 'operator' ? (findPage(DEFAULT_OPERATOR_PAGE) ? DEFAULT_OPERATOR_PAGE : (pages.find((p) => p.section === 'operator')?.path ?? '')) : DEFAULT_ACCOUNT_PAGE;
    history.replaceState(null, '', `#/${path}`);
  }
  renderNav(path);
  const page = findPage(path);

  // Nobody signed in: the operator's pages go to the operator sign-in, the rest to /sign-in.
  if (!s.kind && !isPublic(page)) {
    if (path.startsWith('operator') && findPage(OPERATOR_SIGN_IN)) {
      return navigate(`#/${OPERATOR_SIGN_IN}`);
    }
    if (s.error && s.error.status && s.error.status !== 401) {
      return message('The console could not load', h('p', { role: 'alert' }, errorText(s.error)), h('button', { type: 'button', class: 'btn', onclick: () => start() }, 'Retry'));
    }
    location.replace(signInUrl());
    return;
  }
  if (!page) {
    return message('Page not found', h('p', null, `There is no console page “${path}”.`), h('p', null, h('a', { href: '#/' }, 'Go to the start page')));
  }
  if (!isPublic(page)) {
    if (page.section === 'operator' && s.kind !== 'operator') {
      return message(
        'Only the platform operator',
        h('p', null, 'This page is for the platform operator. Sign in with the operator token to use it.'),
        findPage(OPERATOR_SIGN_IN) ? h('p', null, h('a', { href: `#/${OPERATOR_SIGN_IN}` }, 'Operator sign-in')) : null,
      );
    }
    if (page.section === 'account' && s.kind === 'admin' && !s.isAdmin) {
      return message(
        'Only account admins',
        h('p', null, `You are signed in as ${s.me.user.email}, a member of ${s.me.account.name}. The admin console is for the account's admins: ask one of them to change licenses, seats or users, or to make you an admin.`),
        h('p', null, h('a', { href: '/' }, 'Back to meetings')),
      );
    }
    if (page.section === 'account' && s.kind === 'operator' && !params.get('account')) {
      return message(
        'Choose an account',
        h('p', null, 'Account pages show one account. Open an account from the operator pages first.'),
      );
    }
  }

  document.title = `${page.title} · Parley admin`;
  const container = h('section', { class: 'admin-page-body', 'data-page': page.path });
  replace(main, container);
  const ctx = {
    main: container,
    api,
    session: sessionHandle(),
    accountId: session().accountId || params.get('account') || undefined,
    params,
    path,
    navigate,
    signal: pageController.signal,
  };
  try {
    await page.render(ctx);
  } catch (e) {
    if (seq !== renderSeq || (e && e.name === 'AbortError')) return;
    replace(container, h('h1', { tabindex: '-1' }, page.title), h('div', { class: 'notice notice-error', role: 'alert' }, errorText(e)));
  }
  if (seq !== renderSeq) return;
  // Focus the new page's heading so screen readers and keyboard users start there.
  const h1 = container.querySelector('h1');
  if (h1) {
    if (!h1.hasAttribute('tabindex')) h1.setAttribute('tabindex', '-1');
    if (!container.contains(document.activeElement) || document.activeElement === document.body) h1.focus();
  }
}

// ---- start ----

$('#admin-sign-out').addEventListener('click', async (ev) => {
  const button = ev.currentTarget;
  const wasOperator = session().kind === 'operator';
  button.disabled = true;
  button.textContent = 'Signing out…';
  try {
    await signOut();
    if (wasOperator) {
      $('#admin-status').textContent = 'The operator token is forgotten in this tab.';
      navigate(findPage(OPERATOR_SIGN_IN) ? `#/${OPERATOR_SIGN_IN}` : '#/');
    } else {
      location.assign('/sign-in?next=%2Fadmin%2F');
    }
  } catch (e) {
    $('#admin-status').textContent = errorText(e);
  } finally {
    button.disabled = false;
    button.textContent = 'Sign out';
  }
});

window.addEventListener('parley-admin-session', () => {
  renderHeader();
  renderNav(parseHash().path);
});
window.addEventListener('hashchange', () => route());

async function start() {
  await refreshSession();
  renderHeader();
  route();
}

start();
