// Front end of the Rust example plugin: plain JavaScript, no build step.
//
// Toru loads this file and calls mount(el, api) with an element to render into;
// api.fetch(path, init) calls this plugin's own routes (GET /, GET /counter,
// POST /counter/increment) and returns a fetch Response. unmount(el) is called when
// the page is left: after it, nothing still in flight touches the element.
(function () {
  "use strict";

  var PLUGIN_ID = "hello-plugin-rust";
  var mounted = new WeakMap(); // el -> {alive: boolean}

  function element(tag, text, attributes) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    Object.keys(attributes || {}).forEach(function (name) {
      node.setAttribute(name, attributes[name]);
    });
    return node;
  }

  // The JSON body of a reply, or an Error carrying the plugin's {"error": ...} message.
  function json(response) {
    return response.json().then(
      function (body) {
        if (!response.ok) {
          throw new Error((body && body.error) || "HTTP " + response.status);
        }
        return body;
      },
      function () {
        throw new Error("HTTP " + response.status + ": the reply is not JSON");
      }
    );
  }

  function mount(el, api) {
    var state = { alive: true };
    mounted.set(el, state);

    var message = element("p", "Loading…");
    var details = element("p", "", { class: "toru-muted" });
    var count = element("strong", "…");
    var button = element("button", "Increment", { type: "button" });
    var problem = element("p", "", { role: "alert" });
    var counter = element("p", "Counter: ");
    counter.appendChild(count);
    counter.appendChild(document.createTextNode(" "));
    counter.appendChild(button);

    el.replaceChildren(
      element("h2", "🦀 Hello World (Rust)"),
      message,
      details,
      counter,
      problem
    );

    function show(error) {
      if (state.alive) problem.textContent = error ? "Error: " + error.message : "";
    }

    api
      .fetch("/")
      .then(json)
      .then(function (body) {
        if (!state.alive) return;
        message.textContent = body.message;
        details.textContent =
          "Instance " + (body.instance_id || "unknown") + " · plugin time " + body.time;
      })
      .catch(show);

    api
      .fetch("/counter")
      .then(json)
      .then(function (body) {
        if (state.alive) count.textContent = String(body.count);
      })
      .catch(show);

    button.addEventListener("click", function () {
      button.disabled = true;
      api
        .fetch("/counter/increment", { method: "POST" })
        .then(json)
        .then(function (body) {
          if (!state.alive) return;
          count.textContent = String(body.count);
          show(null);
        })
        .catch(show)
        .finally(function () {
          if (state.alive) button.disabled = false;
        });
    });
  }

  function unmount(el) {
    var state = mounted.get(el);
    if (state) state.alive = false;
    mounted.delete(el);
    el.replaceChildren();
  }

  window.ToruPlugins = window.ToruPlugins || {};
  window.ToruPlugins[PLUGIN_ID] = { mount: mount, unmount: unmount };
})();
