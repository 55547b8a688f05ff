/* The coursekit book's own behaviour, in one file so that a page makes one request for it.
 *
 *  - Self-check quizzes (markup written by book/_ext/coursebook/quiz.py): every click gets
 *    feedback, with no server. Each .ck-quiz is wired on its own, so quizzes never interact.
 *  - Solution toggles say what they open ("Show solution to Exercise 1.1"); other controls are
 *    named by the words they show.
 *  - A display equation wider than its column scrolls inside a wrapper that can take the
 *    keyboard focus, and its number moves below it when the two do not fit side by side.
 *  - Search results: one entry per page and section, and snippets with typeset maths.
 */
(function () {
  "use strict";

  function onReady(callback) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", callback);
    } else {
      callback();
    }
  }

  // Runs once MathJax has typeset the page (at once when the page has no maths).
  function afterMath(callback) {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(callback);
    } else if (document.querySelector("script[src*='mathjax']")) {
      window.addEventListener("load", function () { afterMath(callback); });
    } else {
      callback();
    }
  }

  // Copies of typeset nodes for the quiz's status line: the same maths, not its TeX.
  function copies(element) {
    var fragment = document.createDocumentFragment();
    element.childNodes.forEach(function (child) {
      var copy = child.cloneNode(true);
      if (copy.querySelectorAll) {
        copy.querySelectorAll("[tabindex]").forEach(function (e) { e.removeAttribute("tabindex"); });
        copy.querySelectorAll("[id]").forEach(function (e) { e.removeAttribute("id"); });
      }
      fragment.appendChild(copy);
    });
    return fragment;
  }

  /* ---- Quizzes -------------------------------------------------------------------------- */

  // The status line shows the verdict (`good`: true, false, or null for a neutral message);
  // a screen reader hears the verdict and then `spoken` (typeset nodes, read from the
  // MathML MathJax keeps beside each formula).
  function say(quiz, verdict, good, shown, spoken) {
    var feedback = quiz.querySelector(".ck-quiz-feedback");
    feedback.textContent = "";
    var strong = document.createElement("strong");
    strong.className = "ck-quiz-verdict";
    strong.textContent = verdict;
    feedback.appendChild(strong);
    if (shown) {
      feedback.appendChild(document.createTextNode(" "));
      feedback.appendChild(shown);
    }
    if (spoken) {
      var hidden = document.createElement("span");
      hidden.className = "ck-visually-hidden";
      hidden.appendChild(document.createTextNode(" "));
      hidden.appendChild(spoken);
      feedback.appendChild(hidden);
    }
    feedback.classList.toggle("ck-good", good === true);
    feedback.classList.toggle("ck-bad", good === false);
  }

  function wireChoice(quiz) {
    quiz.querySelectorAll(".ck-quiz-option").forEach(function (button) {
      button.addEventListener("click", function () {
        var correct = button.getAttribute("data-correct") === "true";
        var explain = document.getElementById(button.getAttribute("data-explain"));
        button.classList.remove("ck-correct", "ck-incorrect");
        button.classList.add(correct ? "ck-correct" : "ck-incorrect");
        button.setAttribute("aria-pressed", "true");
        if (explain) {
          explain.hidden = false;
          explain.classList.toggle("ck-good", correct);
          explain.classList.toggle("ck-bad", !correct);
          button.setAttribute("aria-describedby", explain.id);
        }
        say(quiz, correct ? "Correct" : "Incorrect", correct, null, explain ? copies(explain) : null);
      });
    });
  }

  function wireMatch(quiz) {
    var chosen = null;
    var terms = quiz.querySelectorAll(".ck-quiz-term");
    var definitions = quiz.querySelectorAll(".ck-quiz-definition");

    function select(term) {
      terms.forEach(function (t) {
        t.classList.toggle("ck-selected", t === term);
        t.setAttribute("aria-pressed", t === term ? "true" : "false");
      });
      chosen = term;
    }

    function phrase(before, element, after) {
      var fragment = document.createDocumentFragment();
      fragment.appendChild(document.createTextNode(before));
      fragment.appendChild(copies(element));
      fragment.appendChild(document.createTextNode(after));
      return fragment;
    }

    terms.forEach(function (term) {
      term.addEventListener("click", function () {
        if (term.classList.contains("ck-matched")) {
          say(quiz, "Already matched:", null, phrase("", term, ""));
          return;
        }
        select(term);
        say(quiz, "Chosen:", null, phrase("", term, " \u2014 now choose its definition."));
      });
    });

    definitions.forEach(function (definition) {
      definition.addEventListener("click", function () {
        definitions.forEach(function (d) { d.classList.remove("ck-incorrect"); });
        if (chosen === null) {
          say(quiz, "First choose a term,", null, document.createTextNode("then the definition that belongs to it."));
          return;
        }
        if (definition.getAttribute("data-pair") === chosen.getAttribute("data-pair")) {
          chosen.classList.add("ck-matched", "ck-correct");
          definition.classList.add("ck-matched", "ck-correct");
          var left = quiz.querySelectorAll(".ck-quiz-term:not(.ck-matched)").length;
          var rest = left === 0 ? "all pairs matched" : left + (left === 1 ? " pair left" : " pairs left");
          var spoken = phrase("", chosen, ": ");
          spoken.appendChild(copies(definition));
          say(quiz, "Correct", true, document.createTextNode("\u2014 " + rest + "."), spoken);
          select(null);
        } else {
          definition.classList.add("ck-incorrect");
          say(quiz, "Incorrect", false, document.createTextNode("\u2014 try another definition."));
        }
      });
    });
  }

  function wireQuizzes() {
    document.querySelectorAll(".ck-quiz").forEach(function (quiz) {
      if (quiz.getAttribute("data-quiz-type") === "match") { wireMatch(quiz); } else { wireChoice(quiz); }
      quiz.setAttribute("data-quiz-ready", "true");
    });
  }

  /* ---- Solution toggles ----------------------------------------------------------------- */

  // sphinx-togglebutton labels every button "Toggle hidden content"; name the solution instead.
  function labelToggle(button) {
    var box = button.closest(".solution, .admonition");
    var title = box && box.querySelector(".admonition-title");
    if (!title) { return; }
    var what = title.textContent.replace(/\s+/g, " ").trim().replace(/^Solution to /, "solution to ");
    if (!/^solution to /.test(what)) { what = what.charAt(0).toLowerCase() + what.slice(1); }
    var open = button.getAttribute("aria-expanded") === "true";
    var label = (open ? "Hide " : "Show ") + what;
    if (button.getAttribute("aria-label") !== label) { button.setAttribute("aria-label", label); }
  }

  function watchToggles() {
    var main = document.querySelector("main") || document.body;
    main.querySelectorAll("button.toggle-button").forEach(labelToggle);
    new MutationObserver(function (records) {
      records.forEach(function (record) {
        if (record.type === "attributes" && record.target.matches("button.toggle-button")) {
          labelToggle(record.target);
        }
        record.addedNodes.forEach(function (node) {
          if (node.nodeType !== 1) { return; }
          if (node.matches("button.toggle-button")) { labelToggle(node); }
          node.querySelectorAll("button.toggle-button").forEach(labelToggle);
        });
      });
    }).observe(main, { subtree: true, childList: true, attributes: true, attributeFilter: ["aria-expanded"] });
  }

  // Controls named by the words they show. The theme's search buttons show "Search the
  // course..." and myst-nb's folded cells "Show code cell source", but both were named
  // otherwise ("Search", "Toggle hidden content"): without the aria-label the name is the
  // written text. The table of contents' fold buttons show only an arrow: they are named
  // after the entry they open.
  function nameControls() {
    document.querySelectorAll("button.search-button-field[aria-label], summary[aria-label]").forEach(function (control) {
      if (control.textContent.trim()) { control.removeAttribute("aria-label"); }
    });
    document.querySelectorAll("nav li > details > summary").forEach(function (summary) {
      var entry = summary.parentElement.parentElement.querySelector(":scope > a");
      if (!summary.textContent.trim() && entry) {
        summary.setAttribute("aria-label", "Pages under " + entry.textContent.trim());
      }
    });
  }

  /* ---- Display equations ---------------------------------------------------------------- */

  function fitEquation(wrapper) {
    var box = wrapper.parentElement;
    var number = box.querySelector(":scope > .eqno");
    box.classList.remove("ck-eq-stacked");
    // The number goes below the formula when the two do not fit side by side.
    if (number && wrapper.scrollWidth > wrapper.clientWidth + 1) { box.classList.add("ck-eq-stacked"); }
    var scrolls = wrapper.scrollWidth > wrapper.clientWidth + 1;
    wrapper.classList.toggle("ck-scrolls", scrolls);
    showMore(wrapper);
    if (scrolls) {
      // Reachable by keyboard, so the arrow keys can scroll what is cut off.
      wrapper.setAttribute("tabindex", "0");
      wrapper.setAttribute("role", "group");
      wrapper.setAttribute("aria-label", (number ? "Equation " + number.textContent.replace(/[#\s]/g, "") : "Equation") + ", scrolls sideways");
    } else {
      ["tabindex", "role", "aria-label"].forEach(function (name) { wrapper.removeAttribute(name); });
    }
  }

  // Fades mark the sides where the formula continues.
  function showMore(wrapper) {
    var scrolls = wrapper.classList.contains("ck-scrolls");
    wrapper.classList.toggle("ck-more-left", scrolls && wrapper.scrollLeft > 1);
    wrapper.classList.toggle("ck-more-right", scrolls && wrapper.scrollLeft + wrapper.clientWidth < wrapper.scrollWidth - 1);
  }

  function wrapEquations() {
    var wrappers = [];
    document.querySelectorAll("div.math > mjx-container[display='true']").forEach(function (math) {
      var wrapper = math.parentElement.classList.contains("ck-math-scroll") ? math.parentElement : null;
      if (!wrapper) {
        wrapper = document.createElement("div");
        wrapper.className = "ck-math-scroll";
        math.parentElement.insertBefore(wrapper, math);
        wrapper.appendChild(math);
        wrapper.addEventListener("scroll", function () { showMore(wrapper); }, { passive: true });
      }
      wrappers.push(wrapper);
    });
    function fitAll() { wrappers.forEach(fitEquation); }
    fitAll();
    document.documentElement.setAttribute("data-ck-equations-ready", "true");
    var pending = null;
    window.addEventListener("resize", function () {
      if (pending) { cancelAnimationFrame(pending); }
      pending = requestAnimationFrame(fitAll);
    });
  }

  /* ---- Search results --------------------------------------------------------------------- */

  var SNIPPET = 240;
  var MATH = /\\\((?:.|\n)*?\\\)|\\\[(?:.|\n)*?\\\]/g;

  // The prose of the page (or of the section at `anchor`) with the maths kept as TeX. Code and
  // its printed output are left out: a snippet of source reads badly, and its backslashes
  // (string escapes, TeX in plot labels) are not formulas.
  function pageText(html, anchor) {
    var page = new DOMParser().parseFromString(html, "text/html");
    page.querySelectorAll(".headerlink, script, style, .onlyprint, nav, .ck-quiz-feedback, " +
      ".cell_input, .cell_output, div.highlight, pre").forEach(function (e) { e.remove(); });
    var root = (anchor && page.querySelector("[role='main'] #" + CSS.escape(anchor.replace(/^#/, "")))) ||
      page.querySelector("[role='main'] article") || page.querySelector("[role='main']");
    if (!root) { return ""; }
    // The title is already the link of the result.
    var heading = root.querySelector("h1");
    if (heading && !anchor) { heading.remove(); }
    return root.textContent.replace(/\s+/g, " ").trim();
  }

  // A window of about SNIPPET characters around the first keyword, never cutting a formula.
  function snippet(text, keywords) {
    var lower = text.toLowerCase();
    var hits = keywords.map(function (k) { return lower.indexOf(k.toLowerCase()); }).filter(function (i) { return i > -1; });
    var hit = hits.length ? Math.min.apply(null, hits) : 0;
    var start = Math.max(hit - SNIPPET / 2, 0);
    var end = Math.min(start + SNIPPET, text.length);
    var match;
    MATH.lastIndex = 0;
    while ((match = MATH.exec(text)) !== null) {
      var from = match.index, to = match.index + match[0].length;
      if (from < start && to > start) { start = from; }
      if (from < end && to > end) { end = to; }
    }
    return { text: text.slice(start, end).trim(), before: start > 0, after: end < text.length };
  }

  // Paragraph with text and <span class="math nohighlight"> formulas (display maths as inline).
  function summaryElement(part) {
    var summary = document.createElement("p");
    summary.className = "context";
    var last = 0, match;
    var text = (part.before ? "\u2026 " : "") + part.text + (part.after ? " \u2026" : "");
    MATH.lastIndex = 0;
    while ((match = MATH.exec(text)) !== null) {
      summary.appendChild(document.createTextNode(text.slice(last, match.index)));
      var math = document.createElement("span");
      math.className = "math nohighlight";
      math.textContent = "\\(" + match[0].slice(2, -2).trim() + "\\)";
      summary.appendChild(math);
      last = match.index + match[0].length;
    }
    summary.appendChild(document.createTextNode(text.slice(last)));
    afterMath(function () {
      if (window.MathJax && MathJax.typesetPromise) { MathJax.typesetPromise([summary]); }
    });
    return summary;
  }

  // "5. Label smoothing > Label smoothing" is the page itself: one entry per page and anchor.
  function deduplicate(results) {
    var seen = {};
    var kept = [];
    for (var i = results.length - 1; i >= 0; i--) {   // best results are last
      var result = results[i];
      var parts = String(result[1]).split(" > ");
      if (parts.length === 2 && parts[0].replace(/^[\d.]+\s+/, "") === parts[1]) { result[1] = parts[0]; }
      var key = result[0] + "#" + result[2];
      if (!seen[key]) { seen[key] = true; kept.push(result); }
    }
    return kept.reverse();
  }

  function improveSearch() {
    if (typeof Search === "undefined" || !document.getElementById("search-results")) { return; }
    var perform = Search._performSearch;
    Search._performSearch = function () { return deduplicate(perform.apply(Search, arguments)); };
    Search.makeSearchSummary = function (html, keywords, anchor) {
      var text = pageText(html, anchor);
      return text ? summaryElement(snippet(text, Array.from(keywords))) : null;
    };
  }

  improveSearch();
  onReady(function () {
    wireQuizzes();
    watchToggles();
    nameControls();
    afterMath(wrapEquations);
  });
})();
