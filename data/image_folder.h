// torchvision's ImageFolder as a manifest: DIR/<class>/**/<image>, classes = the sorted names of DIR's
// sub-folders, each class's images found by a sorted walk of its folder, a file kept when its lower-cased name ends
// in one of torchvision's IMG_EXTENSIONS (torchvision/datasets/folder.py: find_classes, make_dataset). The label is
// the class name and class_index its position in the sorted class list (ImageFolder's target), so a row here is
// the (path, target) pair ImageFolder yields at the same index.
#pragma once
#include <string>
#include <vector>

#include "data/manifest.h"

namespace tabula::data {

// torchvision.datasets.folder.IMG_EXTENSIONS, in its order.
const std::vector<std::string>& imagefolder_extensions();

// True when DIR looks like an ImageFolder: no image file at its top level and at least one sub-folder.
bool is_imagefolder(const std::string& dir);

// Manifest kind "imagefolder"; metadata columns path (relative to DIR), label, class_index. Files with an
// ImageFolder extension that tabula cannot decode (.bmp, .ppm, .pgm, .webp) are an error naming the file, so the
// rows never silently differ from torchvision's; a class folder without images is an error as in torchvision.
Manifest read_imagefolder_manifest(const std::string& dir);

}  // namespace tabula::data
