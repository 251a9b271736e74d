// Candor's consent banner, version 1. Embed it on your own site with
//   <script src="https://CANDOR/assets/v1/consent.js" data-session="SESSION_TOKEN" defer></script>
// (add integrity="sha384-..." crossorigin="anonymous" to pin it). It asks only when a purpose
// of the policy has no live answer (never asked, or lapsed): a first layer with "Accept all",
// "Reject all" and "Choose" of equal weight, a second with one switch per purpose. It honours
// Global Privacy Control, records the choice through the person's own session (method
// `banner`), talks to no one but Candor and sets no cookie. When done it fires
// `candor:consent` on `document` with the consent state.
(function () {
  'use strict';
  var script = document.currentScript;
  if (!script || !script.dataset.session) return;
  var token = script.dataset.session;
  var base = new URL(script.src).origin;
  var gpc = navigator.globalPrivacyControl === true;

  function call(method, path, body) {
    return fetch(base + path, {
      method: method,
      headers: Object.assign({ authorization: 'Bearer ' + token },
        body ? { 'content-type': 'application/json' } : {}),
      body: body ? JSON.stringify(body) : undefined,
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    }).then(function (res) {
      return res.json().then(function (json) {
        if (!res.ok) throw Object.assign(new Error(json.error ? json.error.message : res.status), { json: json });
        return json;
      });
    });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  Promise.all([call('GET', '/v1/policy'), call('GET', '/v1/session')]).then(function (got) {
    var policy = got[0];
    var subject = got[1].subject;
    var path = '/v1/subjects/' + encodeURIComponent(subject) + '/consent';
    return call('GET', path).catch(function (err) {
      if (err.json && err.json.error && err.json.error.code === 'unknown_subject') return { purposes: {} };
      throw err;
    }).then(function (consent) { show(policy, path, consent); });
  }).catch(function (err) {
    if (window.console) console.warn('candor consent banner:', err.message);
  });

  function show(policy, path, consent) {
    var purposes = Object.keys(policy.purposes).map(function (k) { return policy.purposes[k]; })
      .filter(function (p) { return p.legal_basis === 'consent'; });
    var state = function (p) { var c = consent.purposes[p.name]; return c ? c.state : 'none'; };
    var unanswered = purposes.some(function (p) { return state(p) === 'none' || state(p) === 'expired'; });
    if (!unanswered) return;

    var host = el('div', { id: 'candor-consent' });
    var root = host.attachShadow({ mode: 'open' });
    root.appendChild(el('link', { rel: 'stylesheet', href: base + '/assets/v1/banner.css' }));
    var status = el('p', { class: 'status', role: 'status' });
    var region = el('section', { class: 'banner', role: 'region', 'aria-labelledby': 'candor-h' });
    var heading = el('h2', { id: 'candor-h', text: 'Your privacy choices at ' + policy.controller.name });
    var intro = el('p', { text: 'We use nothing about you for the purposes below unless you say yes. ' +
      'You can change your mind at any time.' });
    region.appendChild(heading);
    region.appendChild(intro);
    if (gpc) {
      region.appendChild(el('p', { class: 'gpc', text: 'Your browser sends Global Privacy Control: ' +
        'we will not sell or share your data or use it for ads elsewhere.' }));
    }
    var allowed = function (p) { return !(gpc && p.gpc_opt_out); };
    var first = el('div', { class: 'actions' }, [
      el('button', { type: 'button', 'data-choice': 'accept', text: 'Accept all' }),
      el('button', { type: 'button', 'data-choice': 'reject', text: 'Reject all' }),
      el('button', { type: 'button', 'data-choice': 'choose', text: 'Choose' }),
    ]);
    region.appendChild(first);
    var second = el('form', { class: 'choices', hidden: '' });
    purposes.forEach(function (p, i) {
      var id = 'candor-p' + i;
      var box = el('input', { type: 'checkbox', role: 'switch', id: id, name: p.name });
      if (state(p) === 'granted' && allowed(p)) box.checked = true;
      if (!allowed(p)) box.disabled = true;
      second.appendChild(el('div', { class: 'purpose' }, [box, el('label', { for: id, text: p.description })]));
    });
    second.appendChild(el('button', { type: 'submit', text: 'Save my choices' }));
    region.appendChild(second);
    region.appendChild(status);
    root.appendChild(region);
    document.body.appendChild(host);

    function record(choices) {
      status.textContent = 'Saving\u2026';
      call('PUT', path, { purposes: choices, method: 'banner' }).then(function (saved) {
        host.remove();
        document.dispatchEvent(new CustomEvent('candor:consent', { detail: saved }));
      }).catch(function (err) {
        status.setAttribute('role', 'alert');
        status.textContent = 'Your choice could not be saved: ' + err.message;
      });
    }
    function all(granted) {
      var choices = {};
      purposes.forEach(function (p) { choices[p.name] = granted && allowed(p); });
      return choices;
    }
    first.addEventListener('click', function (e) {
      var choice = e.target.getAttribute('data-choice');
      if (choice === 'accept') record(all(true));
      else if (choice === 'reject') record(all(false));
      else if (choice === 'choose') {
        second.hidden = false;
        var firstBox = second.querySelector('input:not([disabled])');
        if (firstBox) firstBox.focus();
      }
    });
    second.addEventListener('submit', function (e) {
      e.preventDefault();
      var choices = {};
      purposes.forEach(function (p, i) {
        choices[p.name] = allowed(p) && second.querySelector('#candor-p' + i).checked;
      });
      record(choices);
    });
  }
}());
