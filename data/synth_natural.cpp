// `tabula synth natural`: a small natural-image-like classification set in torchvision's ImageFolder layout.
// Classes are shapes (disc, square, triangle, ring, cross) and textures (stripes, checker, dots); everything a
// class does not define is drawn at random per image (object and background colours, position, scale, rotation, a
// smooth textured background, camera noise), so colour statistics alone cannot tell the classes apart and shape
// (a spatial arrangement) must be seen: the kind of data on which deeper layers of an ImageNet-trained net win.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "data/image.h"
#include "data/synth.h"

namespace tabula::data {

namespace fs = std::filesystem;

namespace {

const char* kNaturalReadme = R"(Synthetic natural-image-like classification set written by `tabula synth natural`.

Layout: torchvision ImageFolder, <class>/<class>_<NNNN>.png (8-bit RGB). `tabula embed --data DIR` and
`tabula study --data DIR` read it as an ImageFolder: label = the class folder, class_index = its position in the
sorted class names.
Classes: disc, square, triangle, ring, cross (solid shapes) and stripes, checker, dots (textured discs). Per image,
at random and independent of the class: object and background colours, centre, scale, rotation, a smooth
two-colour background texture and Gaussian camera noise.
)";

const char* kNaturalClasses[] = {"disc", "square", "triangle", "ring", "cross", "stripes", "checker", "dots"};

// Signed distance-like value of a class's shape in the object's frame (negative inside; the unit is the object's
// radius).
double shape_distance(int cls, double u, double v) {
  const double r = std::sqrt(u * u + v * v);
  switch (cls) {
    case 1:
      return std::max(std::abs(u), std::abs(v)) - 0.8;
    case 2: {
      const double s3 = std::sqrt(3.0);
      return std::max({-v - 0.5, (s3 * u + v) / 2 - 0.5, (-s3 * u + v) / 2 - 0.5}) * 1.1;
    }
    case 3:
      return std::abs(r - 0.72) - 0.24;
    case 4:
      return std::min(std::max(std::abs(u) - 0.3, std::abs(v) - 0.95), std::max(std::abs(u) - 0.95, std::abs(v) - 0.3));
    default:
      return r - 0.95;  // disc and the textured discs
  }
}

// Which of the object's two colours a texture class paints at (u, v): 0 or 1.
int texture(int cls, double u, double v, double freq) {
  switch (cls) {
    case 5:
      return std::sin(u * freq) > 0;
    case 6:
      return (std::sin(u * freq) > 0) != (std::sin(v * freq) > 0);
    case 7: {
      const double pu = std::remainder(u * freq / (2 * M_PI), 1.0), pv = std::remainder(v * freq / (2 * M_PI), 1.0);
      return pu * pu + pv * pv < 0.09;
    }
    default:
      return 0;
  }
}

Image render_natural(uint64_t seed, int cls, int index, int size) {
  Rng r = Rng::stream(seed, 0x6e61747572616cULL, uint64_t(cls), uint64_t(index));
  auto colour = [&](double lo, double hi) {
    return std::array<double, 3>{r.uniform(lo, hi), r.uniform(lo, hi), r.uniform(lo, hi)};
  };
  const auto bg_a = colour(20, 235), bg_b = colour(20, 235), fg_a = colour(0, 255), fg_b = colour(0, 255);
  const double cx = r.uniform(0.35, 0.65), cy = r.uniform(0.35, 0.65), scale = r.uniform(0.18, 0.3);
  const double angle = r.uniform(0, 2 * M_PI), freq = r.uniform(9, 14), noise_sd = r.uniform(3, 10);
  const double bg_freq = r.uniform(2, 6), bg_phase = r.uniform(0, 2 * M_PI), bg_angle = r.uniform(0, M_PI);
  const double ca = std::cos(angle), sa = std::sin(angle);
  const double edge = 1.5 / (scale * size);  // soft edge of ~1.5 px, in object units
  Image img(3, size, size);
  img.max_value = 255;
  img.bits = 8;
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const double px = (x + 0.5) / size, py = (y + 0.5) / size;
      const double t = 0.5 + 0.5 * std::sin(bg_freq * 2 * M_PI * (px * std::cos(bg_angle) + py * std::sin(bg_angle)) +
                                            bg_phase + 1.5 * std::sin(3 * px + 2 * py));
      const double u = ((px - cx) * ca + (py - cy) * sa) / scale, v = (-(px - cx) * sa + (py - cy) * ca) / scale;
      const double cover = std::clamp(0.5 - shape_distance(cls, u, v) / edge, 0.0, 1.0);
      const auto& fg = texture(cls, u, v, freq) ? fg_b : fg_a;
      for (int c = 0; c < 3; ++c) {
        const double back = bg_a[size_t(c)] * (1 - t) + bg_b[size_t(c)] * t;
        img.at(c, y, x) =
            float(std::clamp(back * (1 - cover) + fg[size_t(c)] * cover + noise_sd * r.normal_fast(), 0.0, 255.0));
      }
    }
  return img;
}

}  // namespace

const std::vector<std::string>& natural_classes() {
  static const std::vector<std::string> c(std::begin(kNaturalClasses), std::end(kNaturalClasses));
  return c;
}

SynthSummary synth_natural(const std::string& dir, const NaturalConfig& cfg_in) {
  NaturalConfig cfg = cfg_in;
  if (cfg.quick) cfg.classes = 4, cfg.images_per_class = 12, cfg.size = 48;
  if (cfg.classes < 2 || cfg.classes > int(natural_classes().size()))
    throw std::runtime_error("synth natural: classes must be in [2, " + std::to_string(natural_classes().size()) + "]");
  if (cfg.images_per_class < 1) throw std::runtime_error("synth natural: images per class must be >= 1");
  if (cfg.size < 16 || cfg.size > 4096) throw std::runtime_error("synth natural: size must be in [16, 4096]");
  const auto t0 = std::chrono::steady_clock::now();
  SynthSummary s;
  fs::create_directories(dir);
  for (int c = 0; c < cfg.classes; ++c) {
    const std::string name = natural_classes()[size_t(c)];
    fs::create_directories(fs::path(dir) / name);
    for (int i = 0; i < cfg.images_per_class; ++i) {
      std::string n = std::to_string(i);
      n = std::string(4 - std::min<size_t>(4, n.size()), '0') + n;
      write_png((fs::path(dir) / name / (name + "_" + n + ".png")).string(), render_natural(cfg.seed, c, i, cfg.size));
      ++s.images, ++s.files;
    }
  }
  {
    std::ofstream f(fs::path(dir) / "README.txt");
    f << kNaturalReadme;
    if (!f) throw std::runtime_error(dir + "/README.txt: write failed");
  }
  ++s.files;
  s.manifest = dir;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace tabula::data
