// torchvision's ImageFolder as a manifest kind: classes, order and extensions as torchvision's make_dataset gives
// them (the expected rows below are what torchvision 0.2x's ImageFolder printed for the same tree), and the errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/image_folder.h"
#include "data/manifest.h"
#include "tests/test_util.h"

using namespace tabula::data;
namespace fs = std::filesystem;

namespace {
void touch(const fs::path& p) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << "x";
}
}  // namespace

TEST(DataImageFolder, ClassesOrderAndExtensionsAsTorchvision) {
  const fs::path d = tabula::test::scratch_dir() / "if";
  for (const char* f : {"a/z.png", "a/x/y.png", "a/X/w.JPG", "a/b.tif", "a/c.jp2", "a/notes.txt", "b/img1.PNG"})
    touch(d / f);
  touch(d / "README.txt");  // not an image: the top level still counts as class folders only
  ASSERT_TRUE(is_imagefolder(d.string()));
  Manifest m = read_manifest(d.string());
  EXPECT_EQ(m.kind, "imagefolder");
  EXPECT_EQ(m.meta_columns, (std::vector<std::string>{"path", "label", "class_index"}));
  // torchvision: [('a/b.tif', 0), ('a/z.png', 0), ('a/X/w.JPG', 0), ('a/x/y.png', 0), ('b/img1.PNG', 1)]
  // (.jp2 is not in IMG_EXTENSIONS, so ImageFolder skips it; the walk visits a/ before a/X/ before a/x/).
  std::vector<std::vector<std::string>> want = {{"a/b.tif", "a", "0"},
                                                {"a/z.png", "a", "0"},
                                                {"a/X/w.JPG", "a", "0"},
                                                {"a/x/y.png", "a", "0"},
                                                {"b/img1.PNG", "b", "1"}};
  ASSERT_EQ(m.samples.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(m.samples[i].meta, want[i]) << i;
  EXPECT_EQ(m.samples[4].channel_paths, (std::vector<std::string>{(d / "b/img1.PNG").string()}));
}

TEST(DataImageFolder, ErrorsNameTheFile) {
  const fs::path d = tabula::test::scratch_dir() / "bad";
  touch(d / "cat/1.png");
  touch(d / "dog/2.bmp");  // ImageFolder would read it, tabula cannot decode BMP: never a silently different row set
  try {
    read_imagefolder_manifest(d.string());
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("dog/2.bmp"), std::string::npos) << e.what();
  }
  fs::remove(d / "dog/2.bmp");
  touch(d / "dog/readme.txt");  // a class folder without images: torchvision's "Found no valid file"
  try {
    read_imagefolder_manifest(d.string());
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("dog: class folder without images"), std::string::npos) << e.what();
  }
  // An image at the top level: a plain folder (every image, folder as metadata), not an ImageFolder.
  touch(d / "top.png");
  EXPECT_FALSE(is_imagefolder(d.string()));
  EXPECT_EQ(read_manifest(d.string()).kind, "folder");
}
