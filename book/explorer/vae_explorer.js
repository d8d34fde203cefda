/*
 * vae_explorer.js: the book's trained VAE, run in the reader's browser.
 *
 * Chapter 8 (chapters/08_latent_space.ipynb) embeds this file and the trained
 * weights in its page (vae_explorer.py writes both into one HTML output), so the
 * explorer works from file:// with no network, no server and no Python kernel.
 *
 * Two parts:
 *   1. The forward pass: Dense, Reshape, Flatten, Conv2D and Conv2DTranspose
 *      (padding "same", channels last), ReLU and sigmoid, computed as Keras
 *      computes them. It is written by hand (about 150 lines) because no
 *      package fits: the tensorflowjs converter cannot be installed beside
 *      TensorFlow 2.21, and ONNX Runtime Web needs a 14 MB wasm that does not
 *      load from file://. tests/js/forward.test.js checks it against Keras.
 *   2. The explorer (`mount`): a latent plane with a draggable marker and the
 *      decoded digit beside it, and a drawing pad whose digit the encoder places
 *      on the plane as a posterior (mean, 1 sigma and 2 sigma ellipses, samples).
 *
 * A classic script (no ES module: Chromium refuses module imports from file://).
 * In a page it defines `window.VaeExplorer`; under Node it is a CommonJS module.
 */
(function (root, factory) {
  "use strict";
  var api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.VaeExplorer = api;
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  // ---------------------------------------------------------------------------
  // Arrays from the exported weights (base64 of little-endian float32 or uint8)
  // ---------------------------------------------------------------------------

  function bytesFromBase64(text) {
    var binary = atob(text);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes;
  }

  function float32FromBase64(text) {
    var bytes = bytesFromBase64(text);
    return new Float32Array(bytes.buffer, 0, bytes.length / 4);
  }

  // IEEE half precision -> number (Chromium has no Float16Array yet).
  function halfToNumber(h) {
    var sign = h & 0x8000 ? -1 : 1;
    var exponent = (h >> 10) & 0x1f;
    var fraction = h & 0x3ff;
    if (exponent === 0) return sign * Math.pow(2, -14) * (fraction / 1024);
    if (exponent === 31) return fraction ? NaN : sign * Infinity;
    return sign * Math.pow(2, exponent - 15) * (1 + fraction / 1024);
  }

  // Weights arrive as float32, or as float16 where chapter 8 measured that
  // half precision keeps the outputs within 1e-4; both become Float32Arrays.
  function floatsFromBase64(text, dtype) {
    if (dtype === undefined || dtype === "float32") return float32FromBase64(text);
    if (dtype !== "float16") throw new Error("vae_explorer: unsupported dtype " + dtype);
    var bytes = bytesFromBase64(text);
    var halves = new Uint16Array(bytes.buffer, 0, bytes.length / 2);
    var out = new Float32Array(halves.length);
    for (var i = 0; i < halves.length; i++) out[i] = halfToNumber(halves[i]);
    return out;
  }

  // ---------------------------------------------------------------------------
  // Layers. A tensor is {data: Float32Array, shape: [...]}, channels last, one
  // image (no batch axis). Sums run in float64 (Keras sums in float32), so the
  // two agree to rounding. Zero inputs (ReLU outputs) are skipped: same result.
  // ---------------------------------------------------------------------------

  var ACTIVATIONS = {
    linear: function (v) {
      return v;
    },
    relu: function (v) {
      return v > 0 ? v : 0;
    },
    sigmoid: function (v) {
      return 1 / (1 + Math.exp(-v));
    },
  };

  function activation(name) {
    var f = ACTIVATIONS[name];
    if (!f) {
      throw new Error("vae_explorer: unsupported activation " + name);
    }
    return f;
  }

  function finish(sums, name, shape) {
    var f = activation(name);
    var out = new Float32Array(sums.length);
    for (var i = 0; i < sums.length; i++) {
      out[i] = f(sums[i]);
    }
    return { data: out, shape: shape };
  }

  // y = x · kernel + bias, kernel stored (inputs, units) row by row.
  function dense(input, layer) {
    var x = input.data;
    var units = layer.units;
    var k = layer.kernel;
    var sums = new Float64Array(layer.bias);
    for (var i = 0; i < x.length; i++) {
      var v = x[i];
      if (v === 0) continue;
      var row = i * units;
      for (var j = 0; j < units; j++) {
        sums[j] += v * k[row + j];
      }
    }
    return finish(sums, layer.activation, [units]);
  }

  // TensorFlow's "same" padding: the output has ceil(size / stride) pixels and
  // the padding the kernel needs is split with the odd pixel at the end
  // (bottom/right). For the encoder's stride-2 layer (28 -> 14, kernel 3) that is
  // 0 pixels before and 1 after.
  function samePadding(size, out, stride, kernel) {
    var total = Math.max((out - 1) * stride + kernel - size, 0);
    return Math.floor(total / 2);
  }

  // Cross-correlation (no kernel flip), kernel stored (kh, kw, in, out).
  function conv2d(input, layer) {
    var h = input.shape[0];
    var w = input.shape[1];
    var cin = input.shape[2];
    var kh = layer.kernelSize[0];
    var kw = layer.kernelSize[1];
    var sh = layer.strides[0];
    var sw = layer.strides[1];
    var cout = layer.filters;
    var oh = Math.ceil(h / sh);
    var ow = Math.ceil(w / sw);
    var top = samePadding(h, oh, sh, kh);
    var left = samePadding(w, ow, sw, kw);
    var x = input.data;
    var k = layer.kernel;
    var sums = new Float64Array(oh * ow * cout);
    for (var oy = 0; oy < oh; oy++) {
      for (var ox = 0; ox < ow; ox++) {
        var o = (oy * ow + ox) * cout;
        for (var c = 0; c < cout; c++) sums[o + c] = layer.bias[c];
        for (var ky = 0; ky < kh; ky++) {
          var iy = oy * sh + ky - top;
          if (iy < 0 || iy >= h) continue;
          for (var kx = 0; kx < kw; kx++) {
            var ix = ox * sw + kx - left;
            if (ix < 0 || ix >= w) continue;
            var xBase = (iy * w + ix) * cin;
            var kBase = (ky * kw + kx) * cin * cout;
            addTap(sums, o, x, xBase, k, kBase, cin, cout);
          }
        }
      }
    }
    return finish(sums, layer.activation, [oh, ow, cout]);
  }

  // One kernel tap shared by conv2d and its transpose: the cin input channels
  // at x[xBase..] times the kernel's (cin, cout) block at k[kBase..], added into
  // the cout sums at sums[o..]. Zero inputs (ReLU's many) are skipped.
  function addTap(sums, o, x, xBase, k, kBase, cin, cout) {
    for (var ci = 0; ci < cin; ci++) {
      var v = x[xBase + ci];
      if (v === 0) continue;
      var kRow = kBase + ci * cout;
      for (var co = 0; co < cout; co++) {
        sums[o + co] += v * k[kRow + co];
      }
    }
  }

  // The transpose (the gradient) of conv2d: each input pixel adds the kernel,
  // scaled by its value, into the output at stride steps. Keras stores this
  // kernel (kh, kw, out, in); loadLayer reorders it to (kh, kw, in, out).
  // "same" gives size * stride pixels (14 -> 28) with the padding of the forward
  // conv2d from 28 to 14: 0 before and 1 after, so output pixel
  // o = i * stride + k (k = 0, 1, 2), and o = 28 falls off the end.
  function conv2dTranspose(input, layer) {
    var h = input.shape[0];
    var w = input.shape[1];
    var cin = input.shape[2];
    var kh = layer.kernelSize[0];
    var kw = layer.kernelSize[1];
    var sh = layer.strides[0];
    var sw = layer.strides[1];
    var cout = layer.filters;
    var oh = h * sh;
    var ow = w * sw;
    var top = samePadding(oh, h, sh, kh);
    var left = samePadding(ow, w, sw, kw);
    var x = input.data;
    var k = layer.kernel;
    var sums = new Float64Array(oh * ow * cout);
    for (var iy = 0; iy < h; iy++) {
      for (var ix = 0; ix < w; ix++) {
        var xBase = (iy * w + ix) * cin;
        for (var ky = 0; ky < kh; ky++) {
          var oy = iy * sh + ky - top;
          if (oy < 0 || oy >= oh) continue;
          for (var kx = 0; kx < kw; kx++) {
            var ox = ix * sw + kx - left;
            if (ox < 0 || ox >= ow) continue;
            var o = (oy * ow + ox) * cout;
            var kBase = (ky * kw + kx) * cin * cout;
            addTap(sums, o, x, xBase, k, kBase, cin, cout);
          }
        }
      }
    }
    for (var p = 0; p < oh * ow; p++) {
      for (var c = 0; c < cout; c++) sums[p * cout + c] += layer.bias[c];
    }
    return finish(sums, layer.activation, [oh, ow, cout]);
  }

  function reshape(input, layer) {
    return { data: input.data, shape: layer.targetShape.slice() };
  }

  function flatten(input) {
    return { data: input.data, shape: [input.data.length] };
  }

  function applyActivation(input, layer) {
    return finish(input.data, layer.activation, input.shape);
  }

  var LAYERS = {
    dense: dense,
    conv2d: conv2d,
    conv2d_transpose: conv2dTranspose,
    reshape: reshape,
    flatten: flatten,
    activation: applyActivation,
  };

  // (kh, kw, out, in) -> (kh, kw, in, out), so every inner loop reads the
  // kernel in order.
  function inputMajor(kernel, kh, kw, cout, cin) {
    var out = new Float32Array(kernel.length);
    for (var t = 0; t < kh * kw; t++) {
      for (var co = 0; co < cout; co++) {
        for (var ci = 0; ci < cin; ci++) {
          out[(t * cin + ci) * cout + co] = kernel[(t * cout + co) * cin + ci];
        }
      }
    }
    return out;
  }

  // One exported layer (vae_explorer.py's layer_spec) -> what the loops read.
  function loadLayer(spec) {
    if (!LAYERS[spec.type]) {
      throw new Error("vae_explorer: unsupported layer " + spec.type);
    }
    var layer = {
      type: spec.type,
      name: spec.name,
      activation: spec.activation || "linear",
      units: spec.units,
      filters: spec.filters,
      kernelSize: spec.kernel_size,
      strides: spec.strides,
      targetShape: spec.target_shape,
    };
    if (spec.kernel) {
      layer.kernel = floatsFromBase64(spec.kernel, spec.dtype);
      layer.bias = floatsFromBase64(spec.bias, spec.dtype);
    }
    if (spec.type === "conv2d_transpose") {
      var ks = spec.kernel_size;
      var cin = layer.kernel.length / (ks[0] * ks[1] * spec.filters);
      layer.kernel = inputMajor(layer.kernel, ks[0], ks[1], spec.filters, cin);
    }
    return layer;
  }

  function run(layers, tensor) {
    for (var i = 0; i < layers.length; i++) {
      tensor = LAYERS[layers[i].type](tensor, layers[i]);
    }
    return tensor;
  }

  /**
   * The encoder and decoder from exported weights.
   * encode(image: Float32Array(784) in [0, 1]) -> {mean, logVar} (Float32Arrays)
   * decode(z: array of latentDim numbers) -> Float32Array(784), pixel means
   */
  function loadModel(spec) {
    var trunk = spec.encoder.layers.map(loadLayer);
    var meanHead = loadLayer(spec.encoder.heads.z_mean);
    var logVarHead = loadLayer(spec.encoder.heads.z_log_var);
    var decoderLayers = spec.decoder.layers.map(loadLayer);
    var imageShape = spec.encoder.input_shape;
    var latentDim = spec.decoder.input_shape[0];
    return {
      latentDim: latentDim,
      encode: function (image) {
        var hidden = run(trunk, { data: Float32Array.from(image), shape: imageShape });
        return {
          mean: dense(hidden, meanHead).data,
          logVar: dense(hidden, logVarHead).data,
        };
      },
      decode: function (z) {
        return run(decoderLayers, { data: Float32Array.from(z), shape: [latentDim] })
          .data;
      },
    };
  }

  // ---------------------------------------------------------------------------
  // A drawing, made to look like an MNIST digit. MNIST's digits were scaled to
  // fit a 20 x 20 box (keeping their aspect ratio), anti-aliased to grey levels
  // and placed in the 28 x 28 field with their centre of mass at its centre
  // (LeCun et al.). The pad does the same: strokes are redrawn, scaled to the
  // box, on a canvas ten times finer than 28 x 28, averaged down, then shifted.
  // ---------------------------------------------------------------------------

  var SIDE = 28;
  var FINE = 10; // fine pixels per MNIST pixel
  var BOX = 20; // MNIST pixels the digit is scaled to fit
  var STROKE = 2.5; // stroke width in MNIST pixels, about that of MNIST digits

  function strokeBounds(strokes) {
    var b = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
    strokes.forEach(function (stroke) {
      stroke.forEach(function (p) {
        b.x0 = Math.min(b.x0, p[0]);
        b.y0 = Math.min(b.y0, p[1]);
        b.x1 = Math.max(b.x1, p[0]);
        b.y1 = Math.max(b.y1, p[1]);
      });
    });
    return b.x0 === Infinity ? null : b;
  }

  // Draws the strokes, scaled so that they with their width fill the 20 x 20
  // box, centred on a (28 * FINE)-pixel square canvas context.
  function drawFitted(ctx, strokes) {
    var b = strokeBounds(strokes);
    var size = SIDE * FINE;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, size, size);
    if (!b) return;
    var width = STROKE * FINE;
    var extent = Math.max(b.x1 - b.x0, b.y1 - b.y0, 1e-3);
    var scale = (BOX * FINE - width) / extent;
    ctx.setTransform(
      scale, 0, 0, scale,
      size / 2 - (scale * (b.x0 + b.x1)) / 2,
      size / 2 - (scale * (b.y0 + b.y1)) / 2
    );
    ctx.lineWidth = width / scale;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = "#000";
    strokes.forEach(function (stroke) {
      ctx.beginPath();
      ctx.moveTo(stroke[0][0], stroke[0][1]);
      if (stroke.length === 1) {
        ctx.lineTo(stroke[0][0] + 1e-3, stroke[0][1]); // a dot
      }
      for (var i = 1; i < stroke.length; i++) ctx.lineTo(stroke[i][0], stroke[i][1]);
      ctx.stroke();
    });
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }

  // Mean of each factor x factor block of an RGBA image's alpha (ink) -> [0, 1].
  function averageDown(rgba, side, factor) {
    var small = side / factor;
    var out = new Float32Array(small * small);
    for (var y = 0; y < side; y++) {
      for (var x = 0; x < side; x++) {
        var i = ((y / factor) | 0) * small + ((x / factor) | 0);
        out[i] += rgba[(y * side + x) * 4 + 3];
      }
    }
    var norm = 255 * factor * factor;
    for (var j = 0; j < out.length; j++) out[j] /= norm;
    return out;
  }

  // Shifts a side x side image by whole pixels so that its centre of mass sits
  // at the centre of the field (as MNIST's digits do); ink pushed off the edge
  // is dropped. A blank image is returned as it is.
  function centreByMass(image, side) {
    var total = 0;
    var sy = 0;
    var sx = 0;
    for (var y = 0; y < side; y++) {
      for (var x = 0; x < side; x++) {
        var v = image[y * side + x];
        total += v;
        sy += v * (y + 0.5);
        sx += v * (x + 0.5);
      }
    }
    if (total === 0) return Float32Array.from(image);
    var dy = Math.round(side / 2 - sy / total);
    var dx = Math.round(side / 2 - sx / total);
    var out = new Float32Array(side * side);
    for (var y2 = 0; y2 < side; y2++) {
      for (var x2 = 0; x2 < side; x2++) {
        var ty = y2 + dy;
        var tx = x2 + dx;
        if (ty >= 0 && ty < side && tx >= 0 && tx < side) {
          out[ty * side + tx] = image[y2 * side + x2];
        }
      }
    }
    return out;
  }

  // ---------------------------------------------------------------------------
  // Small helpers for the explorer
  // ---------------------------------------------------------------------------

  // A seeded generator (mulberry32), so the samples repeat from one visit to
  // the next, and standard normals from it (Box-Muller).
  function generator(seed) {
    var state = seed >>> 0;
    function uniform() {
      state = (state + 0x6d2b79f5) >>> 0;
      var t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    }
    return {
      normal: function () {
        var u = 1 - uniform();
        return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
      },
    };
  }

  // matplotlib's "tab10", the colours of the book's scatter plots.
  var DIGIT_COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
  ];
  var LIMIT = 3; // the plane covers z1, z2 in [-3, 3]
  var PLANE = 320; // CSS pixels
  var PAD = 224; // CSS pixels of the drawing pad
  var SAMPLES = 8;

  function number(v) {
    return v.toFixed(2).replace("-", "\u2212");
  }

  function pair(values) {
    return "(" + number(values[0]) + ", " + number(values[1]) + ")";
  }

  function element(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (key) {
      if (key === "text") node.textContent = attributes[key];
      else node.setAttribute(key, attributes[key]);
    });
    (children || []).forEach(function (child) {
      node.appendChild(child);
    });
    return node;
  }

  // Draws a 28 x 28 image of values in [0, 1] dark on light (as the book's
  // figures) into a 28 x 28 canvas; CSS enlarges it with crisp pixels.
  function paintDigit(canvas, image) {
    var ctx = canvas.getContext("2d");
    var pixels = ctx.createImageData(SIDE, SIDE);
    for (var i = 0; i < SIDE * SIDE; i++) {
      var grey = Math.round((1 - Math.min(Math.max(image[i], 0), 1)) * 255);
      pixels.data[i * 4] = grey;
      pixels.data[i * 4 + 1] = grey;
      pixels.data[i * 4 + 2] = grey;
      pixels.data[i * 4 + 3] = 255;
    }
    ctx.putImageData(pixels, 0, 0);
  }

  // Keeps a drag's events coming to the canvas when the pointer leaves it.
  // Capture can fail (a pointer already gone); the drag then still works inside.
  function capture(canvas, event) {
    try {
      canvas.setPointerCapture(event.pointerId);
    } catch (error) {
      /* nothing to capture */
    }
  }

  function hiDpiCanvas(attributes, cssSize) {
    var canvas = element("canvas", attributes);
    var ratio = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
    canvas.width = Math.round(cssSize * ratio);
    canvas.height = Math.round(cssSize * ratio);
    canvas.style.width = cssSize + "px";
    canvas.style.height = cssSize + "px";
    return canvas;
  }

  var STYLE =
    ".vx{font:14px/1.4 system-ui,sans-serif;color:#1a1a1a;margin:1em 0}" +
    ".vx-row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start;" +
    "margin-bottom:14px}" +
    ".vx figure{margin:0}.vx figcaption{max-width:340px;margin-top:4px}" +
    ".vx canvas{border:1px solid #767676;background:#fff;display:block}" +
    ".vx-plane,.vx-pad{touch-action:none;cursor:crosshair}" +
    ".vx-plane:focus-visible{outline:3px solid #1f5fbf;outline-offset:2px}" +
    ".vx-digit{image-rendering:pixelated;width:168px;height:168px}" +
    ".vx-small{image-rendering:pixelated;width:112px;height:112px}" +
    ".vx-legend{list-style:none;padding:0;margin:6px 0 0;display:flex;" +
    "flex-wrap:wrap;gap:4px 12px;max-width:330px}" +
    ".vx-legend li{margin:0}" +
    ".vx-swatch{display:inline-block;width:10px;height:10px;border-radius:50%;" +
    "margin-right:4px;vertical-align:baseline}" +
    ".vx button{font:inherit;margin:6px 8px 0 0;padding:3px 10px;color:#1a1a1a;" +
    "background:#f2f2f2;border:1px solid #767676;border-radius:4px;cursor:pointer}" +
    ".vx output{font-variant-numeric:tabular-nums}";

  /**
   * Builds the explorer inside `container` from the page's data: {model,
   * scatter: {z, labels, count}, examples: {images, labels}}. Returns a handle
   * (used by the tests and the latency benchmark): {model, setZ, z, encodeImage}.
   */
  function mount(container, data) {
    var model = loadModel(data.model);
    var dim = model.latentDim;
    var scatterZ = floatsFromBase64(data.scatter.z, data.scatter.dtype);
    var scatterLabels = bytesFromBase64(data.scatter.labels);
    var exampleImages = bytesFromBase64(data.examples.images);
    var exampleLabels = data.examples.labels;
    var random = generator(1337);
    var state = { z: [0, 0], posterior: null, strokes: [], example: -1 };

    // --- the page elements -------------------------------------------------
    var id = container.id || "vx";
    var plane = hiDpiCanvas(
      {
        class: "vx-plane",
        tabindex: "0",
        role: "application",
        "aria-roledescription": "latent plane",
        "aria-label":
          "Latent plane, z1 from \u22123 to 3 left to right and z2 from " +
          "\u22123 to 3 bottom to top, with the test images' codes coloured " +
          "by digit. Arrow keys move the marker by 0.1, with Shift by 0.5; " +
          "Home puts it back at the origin.",
        "aria-describedby": id + "-z",
      },
      PLANE
    );
    var decoded = element("canvas", {
      class: "vx-digit",
      width: String(SIDE),
      height: String(SIDE),
      role: "img",
      "aria-label": "The decoder's digit at the marker",
    });
    var zOut = element("output", { id: id + "-z", "aria-live": "off" });
    var legend = element(
      "ul",
      { class: "vx-legend", "aria-label": "Colours of the digits" },
      DIGIT_COLOURS.map(function (colour, digit) {
        var swatch = element("span", { class: "vx-swatch", "aria-hidden": "true" });
        swatch.style.background = colour;
        return element("li", {}, [swatch, document.createTextNode(String(digit))]);
      })
    );
    var pad = hiDpiCanvas(
      {
        class: "vx-pad",
        role: "img",
        "aria-label":
          "Drawing pad: draw a digit with a mouse, pen or finger; the encoder " +
          "runs when you lift it. Without a pointer, use the test-digit button.",
      },
      PAD
    );
    var seen = element("canvas", {
      class: "vx-small vx-seen",
      width: String(SIDE),
      height: String(SIDE),
      role: "img",
      "aria-label": "What the encoder sees: the drawing as a 28 by 28 image (empty)",
    });
    var reconstruction = element("canvas", {
      class: "vx-small vx-recon",
      width: String(SIDE),
      height: String(SIDE),
      role: "img",
      "aria-label": "The decoder's reconstruction of the posterior mean (none yet)",
    });
    var clearButton = element("button", { type: "button", text: "Clear the pad" });
    var exampleButton = element("button", { type: "button", text: "Load a test digit" });
    var status = element("p", {
      class: "vx-status",
      "aria-live": "polite",
      text: "Draw a digit on the pad, or load a test digit.",
    });

    function caption(text, extra) {
      return element("figcaption", {}, [document.createTextNode(text)].concat(extra || []));
    }

    var root = element("div", { class: "vx" }, [
      element("style", { text: STYLE }),
      element("div", { class: "vx-row" }, [
        element("figure", {}, [
          plane,
          caption(
            "The latent plane: each dot is a test image's posterior mean. Drag " +
              "the ring, or focus the plane and use the arrow keys.",
            [legend]
          ),
        ]),
        element("figure", {}, [
          decoded,
          caption("Decoded at z = ", [zOut]),
        ]),
      ]),
      element("div", { class: "vx-row" }, [
        element("figure", {}, [
          pad,
          element("div", {}, [clearButton, exampleButton]),
        ]),
        element("figure", {}, [seen, caption("What the encoder sees (28 \u00d7 28)")]),
        element("figure", {}, [
          reconstruction,
          caption("Decoded from the posterior mean"),
        ]),
      ]),
      status,
    ]);
    container.textContent = "";
    container.appendChild(root);

    // --- the latent plane ----------------------------------------------------
    var ratio = plane.width / PLANE;
    function toPixel(z1, z2) {
      return [((z1 + LIMIT) / (2 * LIMIT)) * PLANE, ((LIMIT - z2) / (2 * LIMIT)) * PLANE];
    }
    function clamp(v) {
      return Math.min(Math.max(v, -LIMIT), LIMIT);
    }
    function toCode(x, y) {
      return [clamp((x / PLANE) * 2 * LIMIT - LIMIT), clamp(LIMIT - (y / PLANE) * 2 * LIMIT)];
    }

    // The grid and the scatter never change: drawn once, copied on each frame.
    var background = document.createElement("canvas");
    background.width = plane.width;
    background.height = plane.height;
    (function drawBackground() {
      var ctx = background.getContext("2d");
      ctx.scale(ratio, ratio);
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, PLANE, PLANE);
      ctx.strokeStyle = "#e4e4e4";
      ctx.fillStyle = "#555";
      ctx.font = "10px system-ui, sans-serif";
      for (var v = -LIMIT; v <= LIMIT; v++) {
        var p = toPixel(v, v);
        ctx.lineWidth = v === 0 ? 1.5 : 1;
        ctx.beginPath();
        ctx.moveTo(p[0], 0);
        ctx.lineTo(p[0], PLANE);
        ctx.moveTo(0, p[1]);
        ctx.lineTo(PLANE, p[1]);
        ctx.stroke();
        if (v > -LIMIT && v < LIMIT) {
          ctx.fillText(String(v).replace("-", "\u2212"), p[0] + 2, PLANE - 4);
          ctx.fillText(String(v).replace("-", "\u2212"), 3, p[1] - 3);
        }
      }
      ctx.fillText("z\u2081 \u2192", PLANE - 30, PLANE - 16);
      ctx.fillText("z\u2082 \u2191", 18, 12);
      var count = scatterLabels.length;
      var radius = count > 2000 ? 1.2 : 2;
      ctx.globalAlpha = count > 2000 ? 0.45 : 0.7;
      for (var i = 0; i < count; i++) {
        var q = toPixel(scatterZ[2 * i], scatterZ[2 * i + 1]);
        ctx.fillStyle = DIGIT_COLOURS[scatterLabels[i]];
        ctx.beginPath();
        ctx.arc(q[0], q[1], radius, 0, 2 * Math.PI);
        ctx.fill();
      }
    })();

    function drawPosterior(ctx) {
      var post = state.posterior;
      if (!post) return;
      var centre = toPixel(post.mean[0], post.mean[1]);
      var scale = PLANE / (2 * LIMIT);
      ctx.strokeStyle = "#111";
      [2, 1].forEach(function (k) {
        ctx.setLineDash(k === 2 ? [5, 4] : []);
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.ellipse(
          centre[0], centre[1], k * post.sigma[0] * scale, k * post.sigma[1] * scale,
          0, 0, 2 * Math.PI
        );
        ctx.stroke();
      });
      ctx.setLineDash([]);
      post.samples.forEach(function (z) {
        var q = toPixel(z[0], z[1]);
        ctx.fillStyle = "#111";
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.arc(q[0], q[1], 3.5, 0, 2 * Math.PI);
        ctx.fill();
        ctx.stroke();
      });
      ctx.strokeStyle = "#111";
      ctx.lineWidth = 2.5;
      ctx.beginPath();
      ctx.moveTo(centre[0] - 7, centre[1]);
      ctx.lineTo(centre[0] + 7, centre[1]);
      ctx.moveTo(centre[0], centre[1] - 7);
      ctx.lineTo(centre[0], centre[1] + 7);
      ctx.stroke();
    }

    function drawPlane() {
      var ctx = plane.getContext("2d");
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.drawImage(background, 0, 0);
      ctx.scale(ratio, ratio);
      drawPosterior(ctx);
      var m = toPixel(state.z[0], state.z[1]);
      ctx.lineWidth = 4;
      ctx.strokeStyle = "#fff";
      ctx.beginPath();
      ctx.arc(m[0], m[1], 8, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#c00000";
      ctx.stroke();
    }

    function code(z) {
      var full = new Float32Array(dim);
      full[0] = z[0];
      full[1] = z[1]; // any further dimensions stay at 0
      return full;
    }

    function setZ(z1, z2) {
      state.z = [z1, z2];
      paintDigit(decoded, model.decode(code(state.z)));
      zOut.textContent = pair(state.z);
      decoded.setAttribute("aria-label", "The decoder's digit at z = " + pair(state.z));
      drawPlane();
    }

    function moveTo(event) {
      var box = plane.getBoundingClientRect();
      var z = toCode(
        ((event.clientX - box.left) / box.width) * PLANE,
        ((event.clientY - box.top) / box.height) * PLANE
      );
      setZ(z[0], z[1]);
    }

    var dragging = false;
    plane.addEventListener("pointerdown", function (event) {
      if (event.pointerType === "mouse" && event.button !== 0) return;
      dragging = true;
      capture(plane, event);
      plane.focus({ preventScroll: true });
      moveTo(event);
      event.preventDefault();
    });
    plane.addEventListener("pointermove", function (event) {
      if (dragging) moveTo(event);
    });
    ["pointerup", "pointercancel"].forEach(function (type) {
      plane.addEventListener(type, function () {
        dragging = false;
      });
    });
    plane.addEventListener("keydown", function (event) {
      var step = event.shiftKey ? 0.5 : 0.1;
      var moves = {
        ArrowLeft: [-step, 0],
        ArrowRight: [step, 0],
        ArrowUp: [0, step],
        ArrowDown: [0, -step],
      };
      var z;
      if (moves[event.key]) {
        z = [clamp(state.z[0] + moves[event.key][0]), clamp(state.z[1] + moves[event.key][1])];
      } else if (event.key === "Home") {
        z = [0, 0];
      } else {
        return;
      }
      event.preventDefault();
      setZ(Math.round(z[0] * 1000) / 1000, Math.round(z[1] * 1000) / 1000);
    });

    // --- the drawing pad -----------------------------------------------------
    var padRatio = pad.width / PAD;
    var fine = document.createElement("canvas");
    fine.width = SIDE * FINE;
    fine.height = SIDE * FINE;

    function clearPad() {
      var ctx = pad.getContext("2d");
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, pad.width, pad.height);
      state.strokes = [];
      state.example = -1;
    }

    function padPoint(event) {
      var box = pad.getBoundingClientRect();
      return [
        ((event.clientX - box.left) / box.width) * PAD,
        ((event.clientY - box.top) / box.height) * PAD,
      ];
    }

    function inkSegment(a, b) {
      var ctx = pad.getContext("2d");
      ctx.setTransform(padRatio, 0, 0, padRatio, 0, 0);
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 16;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(a[0], a[1]);
      ctx.lineTo(b[0] + (a === b ? 0.01 : 0), b[1]);
      ctx.stroke();
    }

    function showPosterior(image, what) {
      var post = model.encode(image);
      var sigma = Array.from(post.logVar, function (v) {
        return Math.exp(0.5 * v);
      });
      var samples = [];
      for (var s = 0; s < SAMPLES; s++) {
        samples.push([
          post.mean[0] + sigma[0] * random.normal(),
          post.mean[1] + sigma[1] * random.normal(),
        ]);
      }
      state.posterior = { mean: post.mean, sigma: sigma, samples: samples };
      paintDigit(seen, image);
      seen.setAttribute(
        "aria-label",
        "What the encoder sees: " + what + " as a 28 by 28 image"
      );
      paintDigit(reconstruction, model.decode(post.mean));
      reconstruction.setAttribute(
        "aria-label",
        "The decoder's reconstruction of the posterior mean " + pair(post.mean)
      );
      status.textContent =
        "Encoded " + what + ": posterior mean \u03bc = " + pair(post.mean) +
        ", standard deviation \u03c3 = " + pair(sigma) +
        ". On the plane: the cross is \u03bc, the solid and dashed ellipses " +
        "are 1\u03c3 and 2\u03c3, the dots are samples z = \u03bc + \u03c3\u00b7\u03b5.";
      drawPlane();
    }

    function encodeDrawing() {
      if (!state.strokes.length) return;
      drawFitted(fine.getContext("2d"), state.strokes);
      var rgba = fine.getContext("2d").getImageData(0, 0, fine.width, fine.height).data;
      var image = centreByMass(averageDown(rgba, SIDE * FINE, FINE), SIDE);
      showPosterior(image, "your drawing");
    }

    var drawing = false;
    pad.addEventListener("pointerdown", function (event) {
      if (event.pointerType === "mouse" && event.button !== 0) return;
      if (state.example >= 0) clearPad(); // drawing starts over a test digit
      drawing = true;
      capture(pad, event);
      var p = padPoint(event);
      state.strokes.push([p]);
      inkSegment(p, p);
      event.preventDefault();
    });
    pad.addEventListener("pointermove", function (event) {
      if (!drawing) return;
      var stroke = state.strokes[state.strokes.length - 1];
      var events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
      (events.length ? events : [event]).forEach(function (e) {
        var p = padPoint(e);
        inkSegment(stroke[stroke.length - 1], p);
        stroke.push(p);
      });
    });
    ["pointerup", "pointercancel"].forEach(function (type) {
      pad.addEventListener(type, function () {
        if (!drawing) return;
        drawing = false;
        encodeDrawing();
      });
    });

    clearButton.addEventListener("click", function () {
      clearPad();
      state.posterior = null;
      paintDigit(seen, new Float32Array(SIDE * SIDE));
      paintDigit(reconstruction, new Float32Array(SIDE * SIDE));
      seen.setAttribute("aria-label", "What the encoder sees (empty)");
      reconstruction.setAttribute("aria-label", "The reconstruction (none yet)");
      status.textContent = "Cleared. Draw a digit on the pad, or load a test digit.";
      drawPlane();
    });

    exampleButton.addEventListener("click", function () {
      var count = exampleLabels.length;
      var index = (state.example + 1) % count;
      clearPad();
      state.example = index;
      var image = new Float32Array(SIDE * SIDE);
      for (var i = 0; i < image.length; i++) {
        image[i] = exampleImages[index * SIDE * SIDE + i] / 255;
      }
      var ctx = pad.getContext("2d");
      var tile = document.createElement("canvas");
      tile.width = SIDE;
      tile.height = SIDE;
      paintDigit(tile, image);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(tile, 0, 0, pad.width, pad.height);
      showPosterior(
        image,
        "test digit " + (index + 1) + " of " + count + " (a " + exampleLabels[index] + ")"
      );
    });

    clearPad();
    paintDigit(seen, new Float32Array(SIDE * SIDE));
    paintDigit(reconstruction, new Float32Array(SIDE * SIDE));
    setZ(0, 0);

    return {
      model: model,
      setZ: setZ,
      z: function () {
        return state.z.slice();
      },
      posterior: function () {
        return state.posterior;
      },
    };
  }

  return {
    loadModel: loadModel,
    floatsFromBase64: floatsFromBase64,
    bytesFromBase64: bytesFromBase64,
    averageDown: averageDown,
    centreByMass: centreByMass,
    generator: generator,
    mount: mount,
  };
});
