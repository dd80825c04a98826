/* Moat browser proof. Served at /.moat/proof.js; no external dependencies.
 *
 * In a page (injected, or on the challenge page) it fetches a challenge from /.moat/challenge,
 * solves the proof of work in Web Workers so the page never blocks, and posts the answer to
 * /.moat/verify, which sets the clearance cookie. Same-origin writes (fetch, XMLHttpRequest,
 * form submissions) wait for the clearance, so a person who submits a form a second after the
 * page loaded sees nothing; a write Moat still refuses with `Moat-Clearance: required` is
 * solved for and sent once more. Writes carry `Moat-Page: 1`; one a rate limit stops is
 * answered `429` with `Moat-Clearance: wait` and Retry-After, and the script shows the person
 * a notice, waits, and sends it again, so a person's sign-up is never dropped unseen (an
 * XMLHttpRequest cannot be sent again behind the app's back: the person gets the notice). When a
 * route is under pressure, a send gets `403` with `Moat-Clearance: action` and a challenge
 * bound to it; the script solves it and sends the request again with `Moat-Proof`.
 *
 * Loaded as a worker (/.moat/proof.js?worker) the same file is the solver: it looks for a
 * decimal nonce such that SHA-256(challenge ":" nonce) starts with `difficulty` zero bits.
 * SHA-256 is written out here because crypto.subtle exists only in secure contexts and costs a
 * promise per hash.
 */
(function () {
  "use strict";

  var K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ]);
  var IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
  var W = new Uint32Array(64);

  /* One SHA-256 compression of the 64 bytes at buf[off..] into state h (8 words). */
  function compress(h, buf, off) {
    var i, t1, t2, x, y;
    for (i = 0; i < 16; i++) {
      var j = off + 4 * i;
      W[i] = (buf[j] << 24) | (buf[j + 1] << 16) | (buf[j + 2] << 8) | buf[j + 3];
    }
    for (i = 16; i < 64; i++) {
      x = W[i - 15]; y = W[i - 2];
      W[i] = (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) +
        (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + W[i - 7] + W[i - 16];
    }
    var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (i = 0; i < 64; i++) {
      t1 = k + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
        ((e & f) ^ (~e & g)) + K[i] + W[i];
      t2 = (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
        ((a & b) ^ (a & c) ^ (b & c));
      k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + k) | 0;
  }

  function zeroBits(h) {
    var n = 0;
    for (var i = 0; i < 8; i++) {
      if (h[i] === 0) { n += 32; continue; }
      return n + Math.clz32(h[i]);
    }
    return n;
  }

  function utf8(s) {
    return new TextEncoder().encode(s);
  }

  /* Searches nonces start, start+step, ... and returns the first that solves the challenge.
   * The full 64-byte blocks of `challenge ":"` are hashed once (the midstate); each try then
   * hashes only the last one or two blocks. */
  function search(challenge, difficulty, start, step, limit) {
    var prefix = utf8(challenge + ":");
    var full = Math.floor(prefix.length / 64);
    var mid = new Int32Array(IV);
    for (var b = 0; b < full; b++) compress(mid, prefix, b * 64);
    var rest = prefix.subarray(full * 64);
    var buf = new Uint8Array(128);
    buf.set(rest);
    var h = new Int32Array(8);
    for (var n = start, tries = 0; limit === undefined || tries < limit; n += step, tries++) {
      var s = String(n);
      var len = rest.length;
      for (var i = 0; i < s.length; i++) buf[len++] = s.charCodeAt(i);
      var blocks = len + 9 <= 64 ? 1 : 2;
      buf[len] = 0x80;
      buf.fill(0, len + 1, blocks * 64 - 4);
      var bits = (prefix.length + s.length) * 8;
      var end = blocks * 64;
      buf[end - 4] = bits >>> 24; buf[end - 3] = (bits >>> 16) & 255;
      buf[end - 2] = (bits >>> 8) & 255; buf[end - 1] = bits & 255;
      h.set(mid);
      compress(h, buf, 0);
      if (blocks === 2) compress(h, buf, 64);
      if (zeroBits(h) >= difficulty) return { nonce: s, tries: tries + 1 };
    }
    return null;
  }

  /* ---- worker side ---- */
  if (typeof window === "undefined") {
    self.onmessage = function (e) {
      var d = e.data;
      self.postMessage(search(d.challenge, d.difficulty, d.start, d.step));
    };
    return;
  }

  /* ---- page side ---- */
  if (window.__moat) return; /* already running (a fragment swapped in with the tag again) */
  var me = document.currentScript;
  var scriptUrl = me && me.src ? me.src : "/.moat/proof.js";
  var base = scriptUrl.split("?")[0].replace(/proof\.js$/, "");
  /* The worker is this same file, under the same versioned URL, so it is cached with it. */
  var workerUrl = scriptUrl + (scriptUrl.indexOf("?") >= 0 ? "&" : "?") + "worker";
  var mode = (me && me.getAttribute("data-moat")) || "invisible";
  var origFetch = window.fetch ? window.fetch.bind(window) : null;
  var info = {
    solveMs: null, difficulty: null, cleared: false, failure: null, waits: 0,
    actionMs: null, actionDifficulty: null, presolved: 0
  };
  /* A write waits at most this long for the proof; past it, it goes out anyway. */
  var WAIT_MS = 60000;

  function solveOnMainThread(challenge, difficulty) {
    return new Promise(function (resolve) {
      var n = 0;
      (function slice() {
        var r = search(challenge, difficulty, n, 1, 20000);
        if (r) return resolve(r.nonce);
        n += 20000;
        setTimeout(slice, 0);
      })();
    });
  }

  function work(challenge, difficulty) {
    return new Promise(function (resolve) {
      var count = Math.max(1, Math.min(navigator.hardwareConcurrency || 2, 4));
      var workers = [];
      var settled = false, fellBack = false;
      function stopAll() {
        workers.forEach(function (w) { w.terminate(); });
        workers = [];
      }
      function finish(nonce) {
        if (settled) return;
        settled = true;
        stopAll();
        resolve(nonce);
      }
      function fallback() {
        if (settled || fellBack) return;
        fellBack = true;
        stopAll();
        solveOnMainThread(challenge, difficulty).then(finish);
      }
      try {
        for (var i = 0; i < count; i++) {
          var w = new Worker(workerUrl);
          w.onmessage = function (e) { if (e.data) finish(e.data.nonce); };
          w.onerror = fallback;
          w.postMessage({ challenge: challenge, difficulty: difficulty, start: i, step: count });
          workers.push(w);
        }
      } catch (e) {
        fallback();
      }
    });
  }

  function post(url, body) {
    return origFetch(url, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "content-type": "application/json" }, body: JSON.stringify(body)
    });
  }

  /* One round: ask for a challenge (or learn that the cookie is still good), solve, verify. */
  function solve() {
    var t0 = performance.now();
    return origFetch(base + "challenge", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (c) {
        if (c.cleared) return true;
        info.difficulty = c.difficulty;
        return work(c.challenge, c.difficulty).then(function (nonce) {
          return post(base + "verify", { challenge: c.challenge, nonce: nonce });
        }).then(function (r) {
          info.solveMs = performance.now() - t0;
          return r.ok;
        });
      })
      .then(function (ok) { info.cleared = ok; return ok; },
        function (e) { info.failure = String(e); return false; });
  }

  var running = origFetch ? solve() : Promise.resolve(false);
  var busy = true;
  running.then(function () { busy = false; });

  /* Before a write: the round in progress, or a fresh check. The check costs one small
   * request when the cookie is good, and solves again when it expired or the network
   * changed since the page loaded, so the write never goes out without a valid cookie. */
  function ensureCleared() {
    if (!origFetch) return Promise.resolve(false);
    if (!busy) {
      busy = true;
      running = solve();
      running.then(function () { busy = false; });
    }
    return Promise.race([running, new Promise(function (r) { setTimeout(r, WAIT_MS, false); })]);
  }

  /* ---- a send's own proof, solved while the person types ---- */

  /* When a sign-up route is under pressure each send needs a proof bound to its email. The
   * script asks for it as soon as an email field holds an address, and solves it in the
   * background; the send then carries it, instead of being answered with a challenge and
   * solving only after the person pressed the button. Proofs expire (challenge_ttl, 5
   * minutes by default), so one older than PRESOLVE_FOR is asked for again. */
  var PRESOLVE_FOR = 240000;
  var presolved = {}; /* email -> { at, proof: Promise<"CHALLENGE.NONCE" | null> } */
  var EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]{2,}$/;

  function presolve(email) {
    var have = presolved[email];
    if (have && performance.now() - have.at < PRESOLVE_FOR) return have.proof;
    var proof = running.then(function () {
      return origFetch(base + "action?target=" + encodeURIComponent(email),
        { credentials: "same-origin", cache: "no-store" });
    }).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        var p = j && j.proofs && j.proofs[0];
        if (!p) return null;
        var t0 = performance.now();
        return work(p.challenge, p.difficulty).then(function (nonce) {
          info.actionMs = performance.now() - t0;
          info.actionDifficulty = p.difficulty;
          return p.challenge + "." + nonce;
        });
      })
      .then(null, function () { return null; });
    presolved[email] = { at: performance.now(), proof: proof };
    return proof;
  }

  if (origFetch) {
    var typing = null;
    document.addEventListener("input", function (e) {
      var t = e.target;
      if (!t || t.type !== "email" || !EMAIL.test(t.value || "")) return;
      clearTimeout(typing);
      var email = t.value.trim();
      typing = setTimeout(function () { presolve(email); }, 300);
    }, true);
  }

  /* The proof solved ahead for the email a write's body carries, if any: the write waits for
   * it when it is still being solved, which is sooner than a challenge and a fresh solve. */
  function proofFor(body) {
    if (typeof body !== "string") return Promise.resolve(null);
    for (var email in presolved) {
      if (body.indexOf(JSON.stringify(email).slice(1, -1)) >= 0 ||
          body.indexOf(encodeURIComponent(email)) >= 0) {
        return presolved[email].proof;
      }
    }
    return Promise.resolve(null);
  }

  function isOurWrite(method, url) {
    if (/^(GET|HEAD|OPTIONS)$/i.test(method || "GET")) return false;
    try {
      var u = new URL(url, location.href);
      return u.origin === location.origin && u.pathname.indexOf("/.moat/") !== 0;
    } catch (e) {
      return false;
    }
  }

  /* ---- a write a limit stopped: tell the person, wait, send again ---- */

  /* The longest wait the script sits out by itself, and how many times; past them the app
   * gets Moat's 429 and shows its own error, with the notice saying why. */
  var MAX_WAIT_S = 120, MAX_WAITS = 5;

  /* A write the script does not send again: the app gets Moat's 429, the person the reason. */
  function tooMany(secs) {
    notice("Too many requests are arriving right now. Please try again in about " +
      Math.max(1, Math.round(secs / 60)) + " minute(s).");
  }

  function notice(text) {
    var el = document.getElementById("moat-notice");
    if (text === null) { if (el) el.parentNode.removeChild(el); return; }
    if (!el) {
      el = document.createElement("div");
      el.id = "moat-notice";
      el.setAttribute("role", "status");
      el.setAttribute("aria-live", "polite");
      el.style.cssText = "position:fixed;left:50%;bottom:16px;transform:translateX(-50%);" +
        "max-width:90%;padding:10px 16px;border-radius:6px;background:#222;color:#fff;" +
        "font:14px/1.4 system-ui,sans-serif;z-index:2147483647;box-shadow:0 2px 8px rgba(0,0,0,.3)";
      (document.body || document.documentElement).appendChild(el);
    }
    el.textContent = text;
  }

  function countdown(secs) {
    return new Promise(function (resolve) {
      (function tick(left) {
        if (left <= 0) {
          notice("Sending it now\u2026");
          return resolve();
        }
        notice("Many requests are arriving right now. Yours will be sent in " + left +
          " s; please keep this page open.");
        setTimeout(tick, 1000, left - 1);
      })(secs);
    });
  }

  /* The page script's writes say so, so that a limit answers them with a wait rather than
   * the decoy scripts get. */
  function marked(init, req) {
    var out = {};
    if (init) for (var k in init) out[k] = init[k];
    var h = new Headers((init && init.headers) || (req ? req.headers : undefined));
    h.set("Moat-Page", "1");
    out.headers = h;
    return out;
  }

  if (origFetch) {
    window.fetch = function (input, init) {
      var isReq = typeof Request !== "undefined" && input instanceof Request;
      var method = (init && init.method) || (isReq ? input.method : "GET");
      var url = isReq ? input.url : String(input);
      if (!isOurWrite(method, url)) return origFetch(input, init);
      var opts = marked(init, isReq ? input : null);
      /* A pristine copy to send again; a streamed body can be sent only once, so such a
       * request is not retried. */
      var pristine = null;
      try {
        var body = init && init.body;
        var streamed = typeof ReadableStream !== "undefined" && body instanceof ReadableStream;
        if (!streamed) pristine = isReq ? input.clone() : input;
      } catch (e) {
        pristine = null;
      }
      function copy() { return isReq ? pristine.clone() : pristine; }
      var solvedAgain = false, waits = 0, actions = 0;
      function send(what) {
        return origFetch(what, opts).then(function (resp) {
          var why = resp.headers.get("moat-clearance");
          /* The route is under pressure: this send needs a proof of its own, bound to it. */
          if (pristine !== null && resp.status === 403 && why === "action" && actions < 3) {
            actions++;
            var t0 = performance.now();
            return resp.json().then(function (c) {
              return work(c.challenge, c.difficulty).then(function (nonce) {
                info.actionMs = performance.now() - t0;
                info.actionDifficulty = c.difficulty;
                opts.headers.set("Moat-Proof", c.challenge + "." + nonce);
                return send(copy());
              });
            });
          }
          if (pristine !== null && resp.status === 403 && why === "required" && !solvedAgain) {
            solvedAgain = true;
            busy = true;
            running = solve();
            running.then(function () { busy = false; });
            return running.then(function () { return send(copy()); });
          }
          if (resp.status === 429 && why === "wait") {
            var secs = Math.max(1, Number(resp.headers.get("retry-after")) || 5);
            if (pristine !== null && waits < MAX_WAITS && secs <= MAX_WAIT_S) {
              waits++;
              info.waits = (info.waits || 0) + 1;
              return countdown(secs).then(function () { return send(copy()); });
            }
            tooMany(secs);
            return resp;
          }
          if (waits > 0) notice(null);
          return resp;
        });
      }
      return ensureCleared().then(function () {
        return proofFor(init && init.body);
      }).then(function (proof) {
        if (proof) {
          opts.headers.set("Moat-Proof", proof);
          info.presolved++;
        }
        return send(input);
      });
    };
  }

  if (window.XMLHttpRequest) {
    var open = XMLHttpRequest.prototype.open;
    var send = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.open = function (method, url, async) {
      /* A synchronous request cannot wait; it goes out as it is. */
      this.__moatWrite = isOurWrite(method, url) && async !== false;
      return open.apply(this, arguments);
    };
    XMLHttpRequest.prototype.send = function () {
      var xhr = this, args = arguments;
      if (!xhr.__moatWrite) return send.apply(xhr, args);
      /* Marked like fetch's writes; a 429 to an XMLHttpRequest goes to the app as it is (the
       * request cannot be sent twice behind the app's back), and the person is told why. */
      try { xhr.setRequestHeader("Moat-Page", "1"); } catch (e) { /* not opened */ }
      xhr.addEventListener("load", function () {
        if (xhr.status === 429 && xhr.getResponseHeader("Moat-Clearance") === "wait") {
          tooMany(Math.max(1, Number(xhr.getResponseHeader("Retry-After")) || 5));
        }
      });
      ensureCleared().then(function () {
        /* Still opened and not aborted in the meantime. */
        if (xhr.readyState === 1) send.apply(xhr, args);
      });
    };
  }

  /* Native form submissions (a page navigation) wait for the proof. Listening on window in
   * the bubble phase means a site's own handler has already run: if it took over the submit
   * (preventDefault, then fetch), the fetch wrapper above handles it and nothing is sent
   * twice. */
  window.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form || form.__moatResubmit || e.defaultPrevented) return;
    if (!isOurWrite(form.method, form.action || location.href)) return;
    e.preventDefault();
    var submitter = e.submitter;
    ensureCleared().then(function () {
      form.__moatResubmit = true;
      try {
        if (form.requestSubmit) form.requestSubmit(submitter || undefined); else form.submit();
      } finally {
        form.__moatResubmit = false;
      }
    });
  });

  window.__moat = {
    ready: function () { return running; }, info: info, work: work, search: search
  };

  if (mode === "page") {
    var status = document.getElementById("moat-status");
    var target = (me && me.getAttribute("data-return")) || "/";
    /* Count rounds on this tab: a browser that does not keep the cookie would otherwise
     * solve and reload forever. */
    var key = "moat-rounds:" + target, rounds = 0;
    try { rounds = Number(sessionStorage.getItem(key) || 0); } catch (e) { rounds = 0; }
    running.then(function (ok) {
      if (ok && rounds < 3) {
        try { sessionStorage.setItem(key, String(rounds + 1)); } catch (e) { /* private mode */ }
        if (status) status.textContent = "Done. Loading the page\u2026";
        location.replace(target);
      } else if (status) {
        status.textContent = ok
          ? "Your browser did not keep the check's cookie. Allow cookies for this site and reload."
          : "The check did not complete. Reload the page to try again.";
      }
    });
  }
})();
