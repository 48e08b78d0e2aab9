(function () {
  "use strict";
  // SHA-256 (FIPS 180-4) in plain JavaScript: crypto.subtle exists only in secure contexts (https, localhost), and
  // a promise per hash would cost more than the hash itself.
  var K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ];
  var IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
  var W = new Array(64);

  // One 64-byte block (16 big-endian words of m from off) into the state h, in place.
  function compress(h, m, off) {
    var i, t1, t2, x, y;
    var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (i = 0; i < 64; i++) {
      if (i < 16) {
        W[i] = m[off + i] | 0;
      } else {
        x = W[i - 15]; y = W[i - 2];
        W[i] = (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) +
          (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + W[i - 7] + W[i - 16] | 0;
      }
      t1 = k + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
        ((e & f) ^ (~e & g)) + K[i] + W[i] | 0;
      t2 = (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
        ((a & b) ^ (a & c) ^ (b & c)) | 0;
      k = g; g = f; f = e; e = d + t1 | 0; d = c; c = b; b = a; a = t1 + t2 | 0;
    }
    h[0] = h[0] + a | 0; h[1] = h[1] + b | 0; h[2] = h[2] + c | 0; h[3] = h[3] + d | 0;
    h[4] = h[4] + e | 0; h[5] = h[5] + f | 0; h[6] = h[6] + g | 0; h[7] = h[7] + k | 0;
  }

  var M = new Array(32), H = new Array(8);

  // The padded words of `tail` (an ASCII string) ending a message of `total` bytes, into M; their count.
  function finalWords(tail, total) {
    var n = tail.length, i, words = ((n + 9 + 63) >> 6) << 4;
    for (i = 0; i < words; i++) M[i] = 0;
    for (i = 0; i < n; i++) M[i >> 2] |= (tail.charCodeAt(i) & 0xff) << (24 - (i & 3) * 8);
    M[n >> 2] |= 0x80 << (24 - (n & 3) * 8);
    M[words - 2] = Math.floor(total / 0x20000000);
    M[words - 1] = (total * 8) | 0;
    return words;
  }

  // The state after the whole 64-byte blocks of `text`, and what is left over: SHA-256 of text + more, for many
  // values of `more`, then costs only the last block or two (the challenge is long, the nonce short).
  function midstate(text) {
    var whole = text.length - (text.length % 64), h = IV.slice(), m = new Array(16), i, j;
    for (j = 0; j < whole; j += 64) {
      for (i = 0; i < 16; i++) m[i] = 0;
      for (i = 0; i < 64; i++) m[i >> 2] |= (text.charCodeAt(j + i) & 0xff) << (24 - (i & 3) * 8);
      compress(h, m, 0);
    }
    return { h: h, rest: text.slice(whole), length: whole };
  }

  // The digest of the text `midstate` was made of, followed by `more`: eight unsigned 32-bit words (in H).
  function finish(mid, more) {
    var tail = mid.rest + more, words = finalWords(tail, mid.length + tail.length), j;
    for (j = 0; j < 8; j++) H[j] = mid.h[j];
    for (j = 0; j < words; j += 16) compress(H, M, j);
    for (j = 0; j < 8; j++) H[j] = H[j] >>> 0;
    return H;
  }

  // The digest of an ASCII string, as eight 32-bit words.
  function sha256(text) {
    return finish(midstate(text), "").slice();
  }

  // The first nonce from `start` whose hash of `challenge:nonce` begins with `bits` zero bits, or -1 after `count`.
  function solve(challenge, bits, start, count) {
    var mid = midstate(challenge + ":");
    for (var nonce = start; nonce < start + count; nonce++) {
      var first = finish(mid, String(nonce))[0];
      if (bits === 0 || (first >>> (32 - bits)) === 0) return nonce;
    }
    return -1;
  }

  var root = typeof document !== "undefined" && document.getElementById("floodwall-challenge");
  if (!root) {
    if (typeof module !== "undefined") module.exports = { sha256: sha256, solve: solve };
    return;
  }
  var challenge = root.getAttribute("data-challenge");
  var bits = parseInt(root.getAttribute("data-bits"), 10);
  var verify = root.getAttribute("data-verify");
  var status = document.getElementById("floodwall-status");
  var next = 0;
  function step() {
    var found = solve(challenge, bits, next, 20000);
    if (found >= 0) {
      status.textContent = "Done, loading the page\u2026";
      window.location.replace(verify + "?c=" + encodeURIComponent(challenge) + "&n=" + found);
      return;
    }
    next += 20000;
    setTimeout(step, 0);
  }
  setTimeout(step, 0);
})();
