// Drives GraphiQL and examples/live-places in headless Chromium (Debian's
// `chromium`, through playwright-core: Playwright's own browser download is
// not needed). Run by tests/tests/api/browser.rs against a test server.
//
// Usage: node drive.mjs '<json>' where json is
//   { base, login, password, token, adminToken, screenshots }
// Prints one line per finished step; "OK <json timings>" at the end. On a
// failure it saves a screenshot of every open page under `screenshots`,
// prints their paths and exits 1.
import { chromium } from 'playwright-core';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const config = JSON.parse(process.argv[2]);
const { base, login, password, token, adminToken, screenshots } = config;

// The real binary: /usr/bin/chromium is Debian's wrapper script.
const executablePath =
  process.env.CHROMIUM_PATH ?? ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p));
// Chromium refuses to start as root with its sandbox on (CI and this
// sandbox run as root, with no user namespaces to sandbox into); the pages
// it loads here are our own, from loopback.
const args = process.getuid?.() === 0 ? ['--no-sandbox'] : [];

const pages = {};
let step = 'launching chromium';

async function graphql(query, variables, bearer) {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(`${query}: ${JSON.stringify(body.errors)}`);
  return body.data;
}

const renamePlace = (id, name) =>
  graphql('mutation($id: ID!, $name: String) { updatePlace(input: {id: $id, name: $name}) { place { id } } }', { id, name }, adminToken);
const createReview = (placeId, comment) =>
  graphql(
    'mutation($p: ID!, $c: String) { createReview(input: {placeId: $p, rating: 4, comment: $c}) { review { id } } }',
    { p: placeId, c: comment },
    token,
  );

// Milliseconds until `predicate` holds in the page (polled every frame).
async function timeUntil(page, predicate, arg, timeout = 10000) {
  const started = Date.now();
  await page.waitForFunction(predicate, arg, { timeout, polling: 'raf' });
  return Date.now() - started;
}

function done(name) {
  console.log(`step ok: ${name}`);
}

const browser = await chromium.launch({ executablePath, args, headless: true });
try {
  const timings = {};

  // ---------------- GraphiQL ----------------
  step = 'GraphiQL loads';
  const giql = (pages.graphiql = await browser.newPage());
  giql.on('console', (m) => console.log(`graphiql console: ${m.text()}`));
  giql.on('pageerror', (e) => console.log(`graphiql page error: ${e.message}`));
  // GraphiQL introspects the schema first; a run before that is ignored.
  const introspected = giql.waitForResponse((r) => r.url().endsWith('/graphql') && r.request().method() === 'POST');
  await giql.goto(`${base}/graphiql`);
  await giql.waitForSelector('.graphiql-query-editor .CodeMirror');
  await introspected;
  done(step);

  const setEditor = (selector, text) =>
    giql.evaluate(
      ([selector, text]) => {
        // The visible one: the variables and headers editors share a panel.
        const editor = [...document.querySelectorAll(selector)].find((e) => e.offsetParent !== null);
        editor.CodeMirror.setValue(text);
      },
      [selector, text],
    );
  // The response pane's text (a read-only editor).
  const RESPONSE = () => document.querySelector('.graphiql-response')?.innerText ?? '';
  const response = () => giql.evaluate(RESPONSE);
  const responseIncludes = (text) =>
    timeUntil(giql, (text) => (document.querySelector('.graphiql-response')?.innerText ?? '').includes(text), text);

  step = 'GraphiQL runs a query';
  await setEditor('.graphiql-query-editor .CodeMirror', 'query Places {\n  places(first: 3, orderBy: NAME_ASC) { edges { node { id name } } }\n}');
  // Clicks until the response pane fills: the button is briefly inert
  // while GraphiQL digests the introspection result.
  for (let attempt = 1; ; attempt++) {
    await giql.click('.graphiql-execute-button');
    try {
      await timeUntil(giql, () => (document.querySelector('.graphiql-response')?.innerText ?? '').includes('Place p1'), null, 2000);
      break;
    } catch (e) {
      if (attempt === 5) throw e;
    }
  }
  done(step);

  step = 'GraphiQL subscribes with the token from the Headers tab';
  const { changeCursor } = await graphql('{ changeCursor }', {}, token);
  await giql.click('.graphiql-editor-tools button[data-name=headers]');
  await giql.waitForSelector('section.graphiql-editor-tool[aria-label=Headers]');
  // The section holds the variables editor, then the headers editor.
  await giql.evaluate((headers) => {
    const editors = document.querySelectorAll('section.graphiql-editor-tool .CodeMirror');
    editors[editors.length - 1].CodeMirror.setValue(headers);
  }, JSON.stringify({ Authorization: `Bearer ${token}` }));
  await setEditor(
    '.graphiql-query-editor .CodeMirror',
    `subscription Mine {\n  myReviewChanged(after: "${changeCursor}") { operation review { id comment } }\n}`,
  );
  // GraphiQL re-reads the operation name from the editor after a debounce;
  // a click before that sends the previous operation's name ("Places"),
  // which the server rightly refuses as naming no operation of the document.
  await giql.waitForTimeout(1000);
  await giql.click('.graphiql-execute-button');
  await createReview('p1', 'seen in GraphiQL');
  timings.graphiqlEventMs = await responseIncludes('seen in GraphiQL');
  if (!(await response()).includes('INSERTED')) throw new Error(`no INSERTED event: ${await response()}`);
  done(step);

  // ---------------- examples/live-places ----------------
  step = 'the live page signs in and lists the first page of places near the point';
  const live = (pages.livePlaces = await browser.newPage());
  live.on('pageerror', (e) => console.log(`page error: ${e.message}`));
  await live.goto(`${base}/examples/live-places/`);
  await live.fill('input[name=login]', login);
  await live.fill('input[name=password]', password);
  await live.click('button[type=submit]');
  await live.waitForSelector('#status[data-state=live]', { timeout: 10000 });
  await live.waitForFunction(() => document.querySelectorAll('#places li').length > 0);
  const firstPage = await live.locator('#places li').count();
  if (firstPage !== 5) throw new Error(`first page shows ${firstPage} places, expected 5`);
  // The review GraphiQL saw is in "My reviews" too.
  await live.waitForSelector('#reviews li:has-text("seen in GraphiQL")', { timeout: 5000 });
  done(step);

  step = '"Load more" continues after the last cursor and leaves out the far place';
  await live.click('#more');
  await live.waitForFunction(() => document.querySelectorAll('#places li').length === 7, null, { timeout: 5000 });
  await live.waitForFunction(() => document.querySelector('#more').hidden, null, { timeout: 5000 });
  if (await live.locator('#places li[data-row-id=zfar]').count()) throw new Error('the far place is listed');
  done(step);

  step = 'a place renamed by another client shows within a second';
  let started = Date.now();
  await renamePlace('p2', 'Renamed live');
  await live.waitForSelector('#places li[data-row-id=p2]:has-text("Renamed live")', { timeout: 5000 });
  timings.placeLiveMs = Date.now() - started;
  done(step);

  step = 'a review written by another client of the same user shows within a second';
  started = Date.now();
  await createReview('p3', 'written elsewhere');
  await live.waitForSelector('#reviews li:has-text("written elsewhere")', { timeout: 5000 });
  timings.reviewLiveMs = Date.now() - started;
  done(step);

  step = 'while the socket is down, changes do not show';
  await live.evaluate(() => window.livePlaces.disconnect());
  await live.waitForSelector('#status[data-state=offline]', { timeout: 5000 });
  await renamePlace('p4', 'Renamed while offline');
  await createReview('p4', 'reviewed while offline');
  await live.waitForTimeout(500);
  if (await live.locator('#places li[data-row-id=p4]:has-text("Renamed while offline")').count()) {
    throw new Error('the page is not offline: the rename arrived');
  }
  done(step);

  step = 'after reconnecting, the changes made while offline arrive (resumed with after:)';
  started = Date.now();
  await live.evaluate(() => window.livePlaces.reconnect());
  await live.waitForSelector('#places li[data-row-id=p4]:has-text("Renamed while offline")', { timeout: 5000 });
  await live.waitForSelector('#reviews li:has-text("reviewed while offline")', { timeout: 5000 });
  timings.resumeMs = Date.now() - started;
  await live.waitForSelector('#status[data-state=live]', { timeout: 5000 });
  done(step);

  step = 'and live changes keep coming after the reconnect';
  started = Date.now();
  await renamePlace('p5', 'Renamed after resume');
  await live.waitForSelector('#places li[data-row-id=p5]:has-text("Renamed after resume")', { timeout: 5000 });
  timings.afterResumeMs = Date.now() - started;
  done(step);

  console.log(`OK ${JSON.stringify(timings)}`);
} catch (error) {
  console.log(`FAILED at "${step}": ${error.message}`);
  if (pages.graphiql) console.log(`GraphiQL response pane: ${await pages.graphiql.evaluate(() => document.querySelector('.graphiql-response')?.innerText).catch(() => '?')}`);
  mkdirSync(screenshots, { recursive: true });
  for (const [name, page] of Object.entries(pages)) {
    const path = join(screenshots, `${name}.png`);
    await page.screenshot({ path, fullPage: true }).catch(() => {});
    console.log(`screenshot: ${path}`);
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
