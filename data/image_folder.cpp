#include "data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <stdexcept>

namespace tabula::data {

namespace fs = std::filesystem;

const std::vector<std::string>& imagefolder_extensions() {
  static const std::vector<std::string> e = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"};
  return e;
}

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

bool has_image_extension(const std::string& name) {
  const std::string l = lower(name);
  for (const std::string& e : imagefolder_extensions())
    if (l.size() >= e.size() && l.compare(l.size() - e.size(), e.size(), e) == 0) return true;
  return false;
}

bool decodable(const std::string& name) {
  const std::string e = lower(fs::path(name).extension().string());
  return e == ".jpg" || e == ".jpeg" || e == ".png" || e == ".tif" || e == ".tiff";
}

// os.walk(followlinks=True) sorted by directory path, file names sorted within each directory: the order
// make_dataset visits a class's files in.
void walk_sorted(const fs::path& dir, std::vector<fs::path>* out) {
  std::vector<std::pair<std::string, fs::path>> dirs;  // (walk root as a string, path) for python's tuple sort
  std::vector<fs::path> stack = {dir};
  while (!stack.empty()) {
    fs::path d = stack.back();
    stack.pop_back();
    dirs.push_back({d.string(), d});
    for (const auto& e : fs::directory_iterator(d))
      if (e.is_directory()) stack.push_back(e.path());
  }
  std::sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [name, d] : dirs) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(d))
      if (!e.is_directory()) files.push_back(e.path().filename().string());
    std::sort(files.begin(), files.end());
    for (const std::string& f : files) out->push_back(d / f);
  }
}

}  // namespace

bool is_imagefolder(const std::string& dir) {
  if (!fs::is_directory(dir)) return false;
  bool sub = false;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_directory())
      sub = true;
    else if (has_image_extension(e.path().filename().string()))
      return false;
  }
  return sub;
}

Manifest read_imagefolder_manifest(const std::string& dir) {
  if (!fs::is_directory(dir)) throw std::runtime_error(dir + ": not a folder");
  std::vector<std::string> classes;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) classes.push_back(e.path().filename().string());
  std::sort(classes.begin(), classes.end());
  if (classes.empty()) throw std::runtime_error(dir + ": no class folders (an ImageFolder is DIR/<class>/<image>)");
  Manifest m;
  m.kind = "imagefolder";
  m.source = dir;
  m.channel_names = {"image"};
  m.meta_columns = {"path", "label", "class_index"};
  for (size_t c = 0; c < classes.size(); ++c) {
    std::vector<fs::path> files;
    walk_sorted(fs::path(dir) / classes[c], &files);
    size_t kept = 0;
    for (const fs::path& f : files) {
      const std::string name = f.filename().string();
      if (!has_image_extension(name)) continue;
      if (!decodable(name))
        throw std::runtime_error(f.string() +
                                 ": torchvision's ImageFolder would read this file, tabula cannot decode " +
                                 f.extension().string() + " (convert it to PNG, JPEG or TIFF)");
      Sample s;
      s.channel_paths = {f.string()};
      s.meta = {fs::relative(f, dir).string(), classes[c], std::to_string(c)};
      m.samples.push_back(std::move(s));
      ++kept;
    }
    if (!kept)
      throw std::runtime_error((fs::path(dir) / classes[c]).string() + ": class folder without images (" +
                               "ImageFolder's 'Found no valid file for the classes " + classes[c] + "')");
  }
  return m;
}

}  // namespace tabula::data
