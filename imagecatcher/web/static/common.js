/* imagecatcher live pages: what both pages share.  Plain ES2017, no libraries.
   Data is only ever put into the page as text (textContent), never as HTML. */
"use strict";
var IC = (function () {
  var API = "/service/v1";

  function getJSON(path) {
    return fetch(API + path, { cache: "no-store" }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) {
          throw new Error(body.errormessage || ("HTTP " + response.status));
        }
        return body;
      });
    });
  }

  function text(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value === null || value === undefined ? "" : String(value); }
    return el;
  }

  function el(tag, content, cls) {
    var node = document.createElement(tag);
    if (content !== undefined && content !== null) { node.textContent = String(content); }
    if (cls) { node.className = cls; }
    return node;
  }

  function when(iso) {
    if (!iso) { return ""; }
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
  }

  function rate(perSecond) {
    return perSecond >= 10 ? perSecond.toFixed(0) : perSecond.toFixed(1);
  }

  /* Call load() now and again every `period` ms after each answer; slower
     (up to 10 s) while answers fail or take long.  The status line says how it went. */
  function poll(load, period) {
    var delay = period;
    function once() {
      var started = Date.now();
      load().then(function () {
        var took = Date.now() - started;
        delay = Math.max(period, took * 2);
        var status = text("status", "updated " + new Date().toLocaleTimeString());
        status.classList.remove("error");
      }, function (error) {
        delay = Math.min(delay * 2, 10000);
        var status = text("status", "cannot update: " + error.message);
        status.classList.add("error");
      }).then(function () {
        // A page in a background tab asks the server less often.
        window.setTimeout(once, document.hidden ? Math.max(delay, 10000) : delay);
      });
    }
    once();
  }

  return { API: API, getJSON: getJSON, text: text, el: el, when: when, rate: rate, poll: poll };
})();
