window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
  }
  document.body.dataset.imagesOk = ok + "/" + imgs.length;
  // Where the headline, the first main plot and the first verdict table sit (px from the
  // top, -1 if absent): the browser test checks the page tells its story in that order.
  var tops = ["#headline", "img.main-plot", "table.verdicts"].map(function (sel) {
    var el = document.querySelector(sel);
    return el ? Math.round(el.getBoundingClientRect().top + window.scrollY) : -1;
  });
  document.body.dataset.layout = tops.join(",");
});
