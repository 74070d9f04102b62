// Loads pantry's dashboard pages in Debian's headless Chromium through playwright-core and reports
// what a person would see, as one JSON object on stdout; tests/integration/dashboard_test.py
// asserts on it. Never downloads a browser: it launches /usr/bin/chromium (or $CHROMIUM).
//
// Usage: node dashboard_check.js PLAN.json
// PLAN: {base, user, password, screenshots (a directory),
//        pages: [{name, path}],             each loaded, checked and photographed
//        follow: {path, pattern, live_path, live_selector, live_text} | null}
//   follow: the log page of a running job: the lines matching `pattern` are counted when it has
//   loaded and every half second until the script says the job ended; meanwhile the pipeline
//   page `live_path`, open in a second tab since before, must come to show `live_text` in its
//   element `live_selector` without a reload.
// Report: {pages: [{name, status, console_errors, failed_requests, bad_responses, charts:
//          [{title, points, circles}], title}], follow: {...} | null}
'use strict';

const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

function watch(page, into) {
  page.on('console', (m) => {
    if (m.type() === 'error') into.console_errors.push(m.text());
  });
  page.on('pageerror', (e) => into.console_errors.push('uncaught: ' + e.message));
  page.on('requestfailed', (r) => {
    // A follow stream cut by the page's own navigation away is not a failure of the page.
    const f = r.failure();
    if (f && f.errorText === 'net::ERR_ABORTED' && r.url().includes('follow=1')) return;
    into.failed_requests.push(r.url() + ' ' + (f ? f.errorText : ''));
  });
  page.on('response', (r) => {
    if (r.status() >= 400) into.bad_responses.push(r.status() + ' ' + r.url());
  });
}

async function countLines(page, pattern) {
  return page.evaluate((p) => {
    const log = document.getElementById('log');
    if (!log) return -1;
    const re = new RegExp(p);
    return log.textContent.split('\n').filter((l) => re.test(l)).length;
  }, pattern);
}

async function main() {
  const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  fs.mkdirSync(plan.screenshots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  const context = await browser.newContext({
    baseURL: plan.base,
    httpCredentials: { username: plan.user, password: plan.password },
    viewport: { width: 1280, height: 900 },
  });
  const report = { pages: [], follow: null };

  // The follow first, while the job still runs; then the other pages.
  if (plan.follow) {
    const f = plan.follow;
    const out = { console_errors: [], failed_requests: [], bad_responses: [] };
    const live = await context.newPage();
    watch(live, out);
    await live.goto(f.live_path, { waitUntil: 'load' });
    const page = await context.newPage();
    watch(page, out);
    await page.goto(f.path, { waitUntil: 'load' });
    out.had_follow_url = await page.evaluate(() => {
      const log = document.getElementById('log');
      return Boolean(log && log.dataset.follow);
    });
    out.at_load = await countLines(page, f.pattern);
    await page.screenshot({ path: path.join(plan.screenshots, 'log-following-start.png') });
    const deadline = Date.now() + 60000;
    out.samples = [out.at_load];
    // Without a reload: the count must grow while the job runs, and the follow must end with it.
    for (;;) {
      await page.waitForTimeout(500);
      const n = await countLines(page, f.pattern);
      if (n !== out.samples[out.samples.length - 1]) out.samples.push(n);
      const ended = await page.evaluate(() => {
        const log = document.getElementById('log');
        return Boolean(log && log.dataset.ended);
      });
      if (ended || Date.now() > deadline) {
        out.ended = ended;
        break;
      }
    }
    out.at_end = await countLines(page, f.pattern);
    out.status_text = await page.$eval('#follow-status', (e) => e.textContent).catch(() => '');
    out.heading = await page.$eval('h1', (e) => e.textContent).catch(() => '');
    await page.screenshot({ path: path.join(plan.screenshots, 'log-followed.png'), fullPage: true });
    try {
      await live.waitForFunction(
        ([selector, text]) => {
          const el = document.querySelector(selector);
          return el && el.textContent.includes(text);
        },
        [f.live_selector, f.live_text],
        { timeout: 20000 });
      out.live_updated = true;
    } catch (e) {
      out.live_updated = false;
    }
    out.live_text_seen = await live.$eval(f.live_selector, (e) => e.textContent).catch(() => '');
    await live.screenshot({ path: path.join(plan.screenshots, 'pipeline-live.png'), fullPage: true });
    report.follow = out;
  }

  for (const p of plan.pages) {
    const page = await context.newPage();
    const r = { name: p.name, console_errors: [], failed_requests: [], bad_responses: [] };
    watch(page, r);
    const response = await page.goto(p.path, { waitUntil: 'load' });
    r.status = response ? response.status() : 0;
    r.title = await page.title();
    r.charts = await page.$$eval('svg.chart', (svgs) =>
      svgs.map((s) => ({
        title: (s.querySelector('title') || {}).textContent || '',
        points: Number(s.getAttribute('data-points')),
        circles: s.querySelectorAll('circle.point').length,
      })));
    // Let a live page's script run a refresh round before judging its console.
    await page.waitForTimeout(300);
    await page.screenshot({ path: path.join(plan.screenshots, p.name + '.png'), fullPage: true });
    report.pages.push(r);
    await page.close();
  }

  await browser.close();
  process.stdout.write(JSON.stringify(report) + '\n');
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
