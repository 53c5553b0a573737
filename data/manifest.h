// Manifests: what images make one sample, in which channel order, and which metadata travels with it to the
// embedding's index.csv (untouched, in the manifest's column order). Kinds:
//   jump    CellProfiler load_data.csv: FileName_Orig<Ch> + PathName_Orig<Ch> (or URL_Orig<Ch> with a local
//           path / file:// URL), optional FileName_Illum<Ch> + PathName_Illum<Ch> (.npy, divided out);
//           metadata = the Metadata_* columns. Relative paths are relative to the CSV's folder.
//   rxrx    RxRx metadata.csv (experiment, plate, well or address, [site]) + images/<experiment>/Plate<plate>/
//           <well>_s<site>_w<ch>.png (RxRx1/2) or <well>_s<site>_<ch>.jp2 / .png; RxRx3-core's
//           metadata_rxrx3_core.csv (experiment_name, plate, address; one site) + images/<experiment_name>/
//           Plate<plate>/<address>_s1_<ch>.jp2 (its Hugging Face keys, <experiment>/Plate<n>/<address>_s1_<ch>,
//           as files); channels probed.
//   csv     one row per image, one column per channel path (columns chosen explicitly, or every column whose
//           values are all image file names); every column, the paths included, is metadata.
//   folder  every image file under a folder (sorted); metadata path, name, folder (e.g. a class label).
//   imagefolder  torchvision's ImageFolder (DIR/<class>/<image>): metadata path, label, class_index
//           (data/image_folder.h).
//   hest    HEST patch .h5 files (one file or a folder of them); metadata sample, barcode, x, y.
// read_manifest(path) picks the kind: a .h5 -> hest; a CSV with FileName_Orig* -> jump, with experiment/plate/
// well -> rxrx, else csv; a folder with load_data.csv -> jump, metadata.csv or metadata_rxrx3_core.csv -> rxrx
// or csv, *.h5 only -> hest, only sub-folders (no image
// at the top level) -> imagefolder, else folder.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"

namespace tabula::data {

struct Sample {
  std::vector<std::string> channel_paths;  // one per channel, or one multi-channel file (RGB)
  std::vector<std::string> illum_paths;    // empty, or one .npy per channel
  std::string h5_path;                     // hest: the file and the patch index
  int64_t h5_index = -1;
  std::vector<std::string> meta;           // values of Manifest::meta_columns
  int line = 0;                            // 1-based line of its row in a CSV manifest; 0 when not from a CSV
};

struct Manifest {
  std::string kind;    // jump, rxrx, csv, folder, imagefolder, hest
  std::string source;  // the path it was read from
  std::vector<std::string> channel_names;
  std::vector<std::string> meta_columns;
  std::vector<Sample> samples;
};

struct ManifestOptions {
  std::vector<std::string> channels;         // jump/csv: channel names (or columns) to use, in this order
  bool illumination = true;                  // jump: divide by the Illum functions when the columns exist
  std::string images_root;                   // rxrx: default <folder of metadata.csv>/images
};

Manifest read_manifest(const std::string& path, const ManifestOptions& opt = {});
Manifest read_jump_manifest(const std::string& csv, const ManifestOptions& opt = {});
Manifest read_rxrx_manifest(const std::string& csv, const ManifestOptions& opt = {});
Manifest read_csv_manifest(const std::string& csv, const ManifestOptions& opt = {});
Manifest read_folder_manifest(const std::string& dir);
Manifest read_hest_manifest(const std::string& path_or_dir);

// How errors name sample i: "<manifest>:<line> (sample i)", or "<manifest> (sample i)" when it has no CSV line.
std::string sample_name(const Manifest& m, size_t i);

// Decodes sample i: channels stacked in manifest order (all must agree in size), illumination divided out.
// Errors name the manifest, the row and the file.
Image load_sample(const Manifest& m, size_t i, const DecodeLimits& limits = {});

// The index.csv text for these samples (header = meta_columns, then one row per sample, CSV-quoted).
std::string index_csv(const Manifest& m, const std::vector<size_t>& rows);

}  // namespace tabula::data
