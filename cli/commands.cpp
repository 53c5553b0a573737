#include "cli/commands.h"
#include "cli/transform_flags.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "embed/extractor.h"
#include "util/mpi.h"
#include "util/suggest.h"
#include "engine/system.h"

namespace tabula::cli {

// Each subcommand's implementation lives in its own cmd_*.cpp file.
int cmd_demo(const Args&);
int cmd_embed(const Args&);
int cmd_init(const Args&);
int cmd_merge(const Args&);
int cmd_report(const Args&);
int cmd_study(const Args&);
int cmd_weights_inspect(const Args&);
int cmd_weights_convert(const Args&);
int cmd_eval_map(const Args&);
int cmd_eval_recall(const Args&);
int cmd_eval_knn(const Args&);
int cmd_eval_regress(const Args&);
int cmd_eval_cka(const Args&);
int cmd_eval_corr(const Args&);
int cmd_eval_linear(const Args&);
int cmd_eval_normalize(const Args&);

// Flags every `tabula eval` metric shares.
static const Flag kFeatures{"features", "DIR[:LAYER]|X.npy", "embeddings: DIR:LAYER reads DIR/LAYER.npy", true, ""};
static const Flag kMeta{"meta", "CSV", "metadata, one row per feature row [default: DIR/index.csv]", false, ""};
static const Flag kOut{"out", "DIR", "output folder (tidy CSV + summary.json)", true, ""};
static const Flag kThreads{"threads", "N", "worker threads (0 = all cores; results do not depend on it)", false, "0"};
int cmd_synth(const Args&);
int cmd_preprocess(const Args&);
int cmd_models(const Args&);
int cmd_hooks(const Args&);
int cmd_bench(const Args&);
int cmd_doctor(const Args&);

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"embed", "embed images (or a preprocessed .npy) with a model's layers into an embedding folder",
       "(--arch ARCH | --model NAME) (--weights FILE | --seed N) --data MANIFEST --out DIR [--layers T1,T2|all] "
       "[--pool P] [transform flags]",
       "tabula embed --arch resnet50 --seed 0 --data synth/load_data.csv --out emb/resnet50-s0 --layers layer3,avgpool",
       with_transform_flags({{"arch", "ARCH", "model arch (tabula models), or a baseline: pixels[:hist=16,grid=4], "
                                              "nuclei[:dna=0]", false, ""},
        {"model", "NAME", "a model card (tabula models --trained): arch, transform, embedding rule; NAME:k=v,... "
                          "overrides arch keys", false, ""},
        {"weights", "FILE", "safetensors or PyTorch checkpoint (torchvision/timm/DINOv2 hub/HF layouts)", false, ""},
        {"key", "K", "nested checkpoint entry (teacher, model, ...)", false, ""},
        {"seed", "N", "untrained weights: those torch.manual_seed(N) + the reference constructor give", false, ""},
        {"data", "MANIFEST", "load_data.csv / RxRx metadata.csv / CSV / image folder / HEST .h5, or X.npy [N,C,H,W]", true, ""},
        {"out", "DIR", "embedding folder: LAYER.npy, index.csv, run.json", true, ""},
        {"layers", "T1,T2|all", "taps by PyTorch module name (tabula hooks ARCH); all = every stage/block", false, ""},
        {"pool", "P", "avg|cls|mean|cls+mean|max|gem|none|mean-per-channel (ca_vit: C x D) (default: avg for maps, cls for tokens)", false, ""},
        {"device", "D", "cpu | cuda[:N] (the networks; baselines run on the cpu)", false, "cpu"},
        {"precision", "P", "fp32 or bf16 (cpu: AVX512-BF16); tf32|fp16 on GPU", false, "fp32"},
        {"preprocess", "WHERE", "cpu | device: where the transform runs; device (with --device cuda) sends the "
                                "decoded planes to the GPU as stored and preprocesses there (not yet checked on a "
                                "GPU, hence not the default)", false, "cpu"},
        {"batch", "B", "model inputs per batch", false, "16"},
        {"shard", "I/N", "embed only shard I (0-based) of N; combine with tabula merge", false, ""},
        {"resume", "", "continue an interrupted run in DIR", false, ""},
        {"force", "", "overwrite a finished embedding in DIR", false, ""},
        {"threads", "T", "model threads (0: all cores; under mpirun/srun: this rank's share of its node)", false, "0"},
        {"format", "F", "npy, or h5ad: also DIR/embedding.h5ad for anndata/scanpy (X = last layer, obsm = others, "
                        "obs = index.csv, uns = run.json); with --resume on a finished DIR, adds the file", false, "npy"},
        {"aggregate", "well|C1,C2", "one row per well (mean over its sites/crops; plate + well columns found in the "
                                    "metadata) or per group of the named columns; not with --shard", false, ""},
        {"quiet", "", "no progress output", false, ""}}),
       0, 0, cmd_embed},
      {"init", "write the untrained weights PyTorch builds for a seed (torch.manual_seed + the constructor)",
       "ARCH --seed N --out W.safetensors", "tabula init resnet50 --seed 0 --out resnet50-s0.safetensors",
       {{"arch", "ARCH", "the arch, if not given as the first word", false, ""},
        {"seed", "N", "torch.manual_seed(N)", true, ""},
        {"out", "FILE", "safetensors file (reference key names)", true, ""},
        {"force", "", "overwrite an existing --out file", false, ""}},
       0, 1, cmd_init},
      {"merge", "concatenate the shard folders of one embed run, checking nothing is missing or duplicated",
       "DIR... --out DIR", "tabula merge emb/s0 emb/s1 emb/s2 --out emb/all",
       {{"out", "DIR", "merged embedding folder", true, ""}, {"force", "", "overwrite a finished folder", false, ""}},
       1, 1 << 20, cmd_merge},
      {"demo", "run the study on the embedded synthetic datasets and write a report", "[--out DIR] [--quick]",
       "tabula demo --out demo-out",
       {{"out", "DIR", "output folder (data, embeddings, metrics, summary.csv, report.html); reruns resume", false, "tabula-demo"},
        {"device", "DEV", "cpu | cuda[:N]: where the networks run (the baselines run on the cpu)", false, "cpu"},
        {"precision", "P", "fp32|bf16 (cpu: bf16 needs AVX512-BF16); fp32|tf32|bf16|fp16 on cuda", false, "fp32"},
        {"quick", "", "a small run: quick datasets, resnet18 and vit_tiny (CI)", false, ""},
        {"models", "M1;M2", "models: ARCH@SEED (untrained), ARCH=FILE (weights), pixels, nuclei", false, ""},
        {"weights", "ARCH=FILE;..", "trained models to add to the default set", false, ""},
        {"size", "S", "model input size (0: each arch's default)", false, "0"},
        {"threads", "T", "threads (0: all cores)", false, "0"},
        {"quiet", "", "no progress output", false, ""}},
       0, 0, cmd_demo},
      {"doctor", "what this node offers and what tabula will use on it, then a short self-check (ops and tiny forwards per backend)",
       "[--out DIR] [--no-check]", "tabula doctor --out /scratch/$USER/run",
       {{"out", "DIR", "the folder runs will write to: its free disk space and whether it is writable", false, "."},
        {"threads", "T", "threads for the self-check (0: the default, as embed uses)", false, "0"},
        {"no-check", "", "only the report, no self-check", false, ""}},
       0, 0, cmd_doctor},
      {"study", "the study on your data: models x seeds x every layer, normalisation, the metrics the metadata "
                "supports, CKA, report",
       "--data MANIFEST --out DIR [--models M1;M2] [--weights ARCH=FILE] [--plate-col C --control COL=VALUE "
       "--compound-col C] [--label-col C] [--targets CSV --fold-col C]",
       "tabula study --data load_data.csv --out study --plate-col Metadata_Plate "
       "--control Metadata_pert_type=negcon --compound-col Metadata_JCP2022",
       {{"data", "MANIFEST", "what `tabula embed --data` takes (load_data.csv, CSV, folder, ImageFolder, .h5)", true, ""},
        {"out", "DIR", "study folder (embeddings, metrics, summary.csv, report.html); reruns resume", true, ""},
        {"name", "NAME", "the dataset's folder name under embed/ and eval/", false, "data"},
        {"models", "M1;M2", "ARCH@SEED (untrained), ARCH=FILE (trained weights), pixels, nuclei", false,
         "resnet50@0;resnet50@1;vit_small_patch16_224@0;vit_small_patch16_224@1;pixels;nuclei"},
        {"weights", "ARCH=FILE;..", "trained models added to --models (their untrained twins: ARCH@SEED)", false, ""},
        {"plate-col", "C", "per-plate normalisation (MAD on the controls) and mAP negatives on the same plate", false, ""},
        {"batch-col", "C", "batch column (the report colours the PCA by it)", false, ""},
        {"control", "COL=VALUE", "negative controls (e.g. Metadata_pert_type=negcon)", false, ""},
        {"compound-col", "C", "replicate mAP of this column against the controls (needs --control)", false, ""},
        {"phenotypes", "CSV", "compound -> phenotype class table: mAP and retrieval per class", false, ""},
        {"phenotype-col", "C", "the class column of --phenotypes", false, "Metadata_phenotype"},
        {"relationships", "CSV", "known compound pairs (compound_a, compound_b): relationship recall", false, ""},
        {"label-col", "C", "kNN (DINOv2 protocol) and linear probe on this label [ImageFolder: label]", false, ""},
        {"group-col", "C", "kNN holds out the query's group (e.g. a plate); then no linear probe", false, ""},
        {"split-col", "C", "train/val/test column [default: 1/5 test, 1/5 val per class]", false, ""},
        {"k", "K", "kNN neighbours", false, "10"},
        {"targets", "CSV", "regression targets (ridge + 1-NN, HEST): one row per image, by --target-id or in manifest "
                           "order", false, ""},
        {"target-id", "C", "an identifier column of --targets (not a target); rows are matched to the images by it "
                           "when the manifest has the column too", false, ""},
        {"fold-col", "C", "regression folds (e.g. patient)", false, ""},
        {"log1p", "", "regress log1p of the targets (expression counts)", false, ""},
        {"pca", "N", "PCA components before the ridge (HEST: 256)", false, "256"},
        {"dark-nuclei", "", "the nuclei baseline looks for dark nuclei in channel 0 (H&E, brightfield)", false, ""},
        {"null-size", "N", "mAP null samples", false, "10000"},
        {"size", "S", "model input size (0: each arch's default)", false, "0"},
        {"device", "DEV", "cpu | cuda[:N]: where the networks run", false, "cpu"},
        {"precision", "P", "fp32|bf16 (cpu: bf16 needs AVX512-BF16); fp32|tf32|bf16|fp16 on cuda", false, "fp32"},
        {"threads", "T", "threads (0: all cores)", false, "0"},
        {"title", "T", "report heading", false, ""},
        {"quiet", "", "no progress output", false, ""}},
       0, 0, cmd_study},
      {"report", "build the HTML report (figures, within-noise table, provenance) from study folders or eval outputs",
       "RUN_DIR... --out report.html [--title T]",
       "tabula report tabula-demo --out report.html",
       {{"out", "FILE", "the report (one self-contained HTML file, written atomically)", true, ""},
        {"title", "T", "heading of the report", false, ""},
        {"bootstrap", "N", "resamples for the 95 % intervals (error bars, within-noise notes)", false, "2000"},
        {"seed", "S", "bootstrap seed (same inputs + seed = same bytes)", false, "0"}},
       1, 1 << 20, cmd_report},
      {"weights inspect", "format, layout, tensors, parameters, dtypes and sha256 of a weight file", "FILE [--key K]",
       "tabula weights inspect dinov2_vits14_pretrain.pth",
       {{"key", "K", "nested state dict to use, e.g. teacher or model/teacher (default: detected)", false, ""},
        {"tensors", "", "list every tensor with dtype and shape", false, ""},
        {"no-hash", "", "skip the SHA-256 of the file (it reads every byte; the rest only maps the file)", false, ""}},
       1, 1, cmd_weights_inspect},
      {"weights convert", "map a checkpoint to tabula's names for ARCH and write safetensors",
       "IN --arch ARCH --out OUT.safetensors [--dtype f32|f16|bf16] [--key K]",
       "tabula weights convert dinov2_vits14_pretrain.pth --arch dinov2_vits14 --out vits14.safetensors",
       {{"arch", "ARCH", "architecture the weights are for (resnet50, vit_small_patch16_224, dinov2_vits14, vit:...)", true, ""},
        {"out", "OUT", "output .safetensors file (written atomically)", true, ""},
        {"dtype", "DTYPE", "f32, f16 or bf16 for floating-point tensors (default: keep)", false, ""},
        {"key", "K", "nested state dict to use, e.g. teacher or model/teacher (default: detected)", false, ""},
        {"layout", "L", "source layout instead of detecting it: torchvision-resnet, timm-vit, dinov2-hub, hf-dinov2, hf-vit, "
                        "timm-swin, swin-timm0.5, timm-convnext, original-convnext, conch-coca, recursion-mae", false, ""},
        {"allow-missing", "", "write even when the file lacks keys the arch has", false, ""},
        {"force", "", "overwrite an existing --out file", false, ""}},
       1, 1, cmd_weights_convert},
      {"eval map", "replicate-retrieval mAP with copairs semantics (AP, mAP, p-values, BH)",
       "--features DIR[:LAYER]|X.npy --pos-sameby C,.. [--neg-sameby ..] [--neg-diffby ..] --out DIR",
       "tabula eval map --features emb:layer4 --pos-sameby Metadata_JCP2022,Metadata_Reference_Index "
       "--neg-sameby Metadata_Plate --neg-diffby Metadata_negcon,Metadata_Reference_Index "
       "--reference-index Metadata_negcon=True --out map-out",
       {kFeatures, kMeta,
        {"pos-sameby", "C,..", "positive pairs share all these columns", true, ""},
        {"pos-diffby", "C,..", "positive pairs differ in all these columns", false, ""},
        {"neg-sameby", "C,..", "negative pairs share all these columns", false, ""},
        {"neg-diffby", "C,..", "negative pairs differ in all these columns", false, ""},
        {"reference-index", "COL=VALUE",
         "add Metadata_Reference_Index (-1, or the row index where COL == VALUE), copairs' assign_reference_index",
         false, ""},
        {"groupby", "C,..", "columns of the mAP groups [default: --pos-sameby]", false, ""},
        {"null-size", "N", "random-ranking null samples per (n_pos, n_total)", false, "10000"},
        {"seed", "S", "null seed", false, "0"},
        {"null-rng", "copairs|floyd",
         "copairs: the very null copairs 0.5.5 draws (same p-values; O(n_total) per sample); floyd: the same "
         "distribution from tabula's own stream, O(n_pos) per sample",
         false, "copairs"},
        {"threshold", "T", "significance threshold for below_p / below_corrected_p", false, "0.05"},
        {"timings", "", "print each stage's wall time and resident memory to stderr", false, ""},
        kThreads, kOut},
       0, 0, cmd_eval_map},
      {"eval recall", "known-relationship recall with EFAAR semantics on the aggregated map",
       "--features DIR[:LAYER] --pert-col C --relationships FILE[,..] --out DIR",
       "tabula eval recall --features emb:layer4 --pert-col gene --relationships CORUM.csv --out recall-out",
       {kFeatures, kMeta,
        {"pert-col", "C", "perturbation column (one map row per value after aggregation)", true, ""},
        {"relationships", "FILE,..", "two-column CSV/TSV files of related pairs (entity1,entity2)", true, ""},
        {"aggregate", "mean|median|none", "how replicates are aggregated", false, "mean"},
        {"drop", "V,..", "perturbations removed before aggregation (e.g. controls)", false, ""},
        {"thresholds", "LO:HI,..", "recall threshold pairs", false, "0.05:0.95,0.1:0.9"},
        kThreads, kOut},
       0, 0, cmd_eval_recall},
      {"eval knn", "k-NN classification accuracy (DINOv2 weighted or sklearn default), group held out",
       "--features DIR[:LAYER] --label-col C [--split-col C] [--group-col C] --out DIR",
       "tabula eval knn --features emb:layer4 --label-col moa --group-col plate --out knn-out",
       {kFeatures, kMeta,
        {"label-col", "C", "class label column", true, ""},
        {"split-col", "C", "train/test column (without it: leave-one-out)", false, ""},
        {"train-value", "V", "value of --split-col marking training rows", false, "train"},
        {"test-value", "V", "value of --split-col marking query rows", false, "test"},
        {"group-col", "C", "hold out each query's group (plate/batch) from its neighbours", false, ""},
        {"kind", "dinov2|sklearn", "DINOv2 softmax-weighted cosine kNN or sklearn's KNeighborsClassifier()", false,
         "dinov2"},
        {"k", "K,..", "neighbour counts [default: 10,20,100,200 for dinov2, 5 for sklearn]", false, ""},
        {"temperature", "T", "DINOv2 softmax temperature", false, "0.07"},
        kThreads, kOut},
       0, 0, cmd_eval_knn},
      {"eval regress", "HEST regression: ridge probe (scaler, PCA, ridge) or k-NN, Pearson r per target and fold",
       "--features DIR[:LAYER] --targets Y.npy|Y.csv --fold-col C --out DIR",
       "tabula eval regress --features emb:layer4 --targets expr.csv --log1p --top-variable 50 --fold-col patient "
       "--out hest-out",
       {kFeatures, kMeta,
        {"targets", "Y.npy|Y.csv", "targets, one row per feature row ([N, G] .npy or CSV columns)", true, ""},
        {"target-cols", "C,..", "CSV target columns [default: all but --target-id]", false, ""},
        {"target-id", "C", "CSV: match target rows to the --meta rows by this id column (else: row order)", false, ""},
        {"log1p", "", "apply log1p to the targets (HEST)", false, ""},
        {"top-variable", "G", "keep the G most variable targets (HEST: 50; 0 = all)", false, "0"},
        {"fold-col", "C", "each distinct value is held out once (HEST: patient)", true, ""},
        {"method", "ridge|knn", "HEST ridge probe or k-NN regression", false, "ridge"},
        {"solver", "lsqr|exact", "ridge solver: HEST's LSQR (tol 1e-4) or the converged solution", false, "lsqr"},
        {"pca", "N", "PCA components before ridge (0 = none)", false, "256"},
        {"pca-solver", "auto|exact|randomized",
         "PCA solver: scikit-learn's svd_solver=\"auto\" rule (randomized SVD above 500 rows), the exact SVD, or "
         "randomized", false, "auto"},
        {"seed", "N", "PCA random_state (HEST's --seed)", false, "1"},
        {"k", "K", "neighbours for --method knn", false, "1"},
        kThreads, kOut},
       0, 0, cmd_eval_regress},
      {"eval cka", "layer x layer CKA between two embedding runs (linear or unbiased minibatch)",
       "--features RUN_A --other RUN_B [--layers ..] [--other-layers ..] --out DIR",
       "tabula eval cka --features run-untrained --other run-trained --kind unbiased --batch 256 --out cka-out",
       {{"features", "DIR|X.npy", "first run (embedding folder or one .npy)", true, ""},
        {"other", "DIR|X.npy", "second run, same samples in the same order", true, ""},
        {"layers", "L,..", "layers of the first run [default: every .npy]", false, ""},
        {"other-layers", "L,..", "layers of the second run [default: every .npy]", false, ""},
        {"kind", "linear|unbiased", "linear CKA or unbiased (minibatch) CKA", false, "linear"},
        {"batch", "N", "minibatch size for --kind unbiased (0 = all rows)", false, "0"},
        kOut},
       0, 0, cmd_eval_cka},
      {"eval corr", "Pearson and Spearman correlation of per-sample scores from two runs",
       "--a FILE.csv:COL|X.npy --b FILE.csv:COL|X.npy --out DIR",
       "tabula eval corr --a run1/ap.csv:average_precision --b run2/ap.csv:average_precision --out corr-out",
       {{"a", "CSV:COL|X.npy", "first score vector", true, ""},
        {"b", "CSV:COL|X.npy", "second score vector (same samples, same order)", true, ""},
        kOut},
       0, 0, cmd_eval_corr},
      {"eval linear", "linear probe: multinomial logistic regression (L-BFGS), L2 strength chosen on validation",
       "--features DIR[:LAYER] --label-col C --split-col C --out DIR",
       "tabula eval linear --features emb:layer4 --label-col moa --split-col split --out linear-out",
       {kFeatures, kMeta,
        {"label-col", "C", "class label column", true, ""},
        {"split-col", "C", "column with train / val / test values", true, ""},
        {"train-value", "V", "training rows", false, "train"},
        {"val-value", "V", "validation rows (choose C)", false, "val"},
        {"test-value", "V", "test rows (scored)", false, "test"},
        {"C", "C,..", "inverse L2 strengths to sweep [default: 1e-4 .. 1e4, x10]", false, ""},
        kOut},
       0, 0, cmd_eval_linear},
      {"eval normalize", "normalise / aggregate / filter an embedding on controls; writes OUT/LAYER.npy + index.csv",
       "--features DIR[:LAYER] --method M [--group-col C] [--control COL=VALUE] --out DIR",
       "tabula eval normalize --features emb:layer4 --method mad --group-col Metadata_Plate "
       "--control Metadata_negcon=True --out emb-mad",
       {kFeatures, kMeta,
        {"method", "M",
         "standardize | mad (pycytominer mad_robustize) | mad-normal (scipy scale=normal) | mad-raw | spherize-pca | "
         "spherize-zca | spherize-pca-cor | spherize-zca-cor | pca | "
         "tvn | centerscale | pca-centerscale | aggregate | filter",
         true, ""},
        {"group-col", "C", "fit per group (plate / batch)", false, ""},
        {"control", "COL=VALUE", "rows the transform is fitted on (negative controls) [default: all rows]", false, ""},
        {"eps", "E", "regulariser (spherize 1e-6, MAD 1e-18, standardize 0)", false, ""},
        {"n-components", "N", "components for pca / pca-centerscale (0 = all / 128)", false, "0"},
        {"by", "C,..", "aggregate: group columns", false, ""},
        {"agg", "mean|median", "aggregate: statistic", false, "mean"},
        {"min-variance", "V", "filter: drop features with variance <= V (negative: off)", false, "0"},
        {"keep-zero-mad", "", "filter: keep zero-MAD features", false, ""},
        kOut},
       0, 0, cmd_eval_normalize},
      {"synth", "write a synthetic dataset (Cell Painting TIFFs, H&E-like tissue patches, natural-like ImageFolder)",
       "cellpainting|tissue|natural --out DIR [--seed N] [--quick]", "tabula synth cellpainting --out cp --seed 0",
       {{"out", "DIR", "output folder", true, ""},
        {"seed", "N", "random seed (same seed, same bytes)", false, "0"},
        {"quick", "", "a small dataset for CI (cellpainting: 1 batch x 2 plates, 128 px; tissue: 3 x 12 patches; "
                      "natural: 4 classes x 12 images, 48 px)", false, ""},
        {"batches", "N", "cellpainting: batches", false, "3"},
        {"plates", "N", "cellpainting: plates per batch", false, "2"},
        {"sites", "N", "cellpainting: sites (fields) per well", false, "2"},
        {"size", "PX", "field side (cellpainting, default 256), patch side (tissue, 224) or image side (natural, 96)",
         false, ""},
        {"classes", "N", "natural: classes (2..8)", false, "8"},
        {"images", "N", "natural: images per class", false, "20"},
        {"patients", "N", "tissue: patients", false, "6"},
        {"patches", "N", "tissue: patches per patient", false, "60"},
        {"threads", "T", "worker threads (0: all cores)", false, "0"},
        {"force", "", "write into a non-empty output folder", false, ""}},
       1, 1, cmd_synth},
      {"preprocess", "write the exact model input tensors of a manifest to a .npy (with an index.csv)",
       "--data MANIFEST --out X.npy [--model NAME | --arch ARCH | --preset P] [transform flags]",
       "tabula preprocess --data cp/load_data.csv --out x.npy --preset dinov2 --intensity percentile --limit 8",
       with_transform_flags({
        {"data", "MANIFEST", "load_data.csv, RxRx metadata.csv, a CSV of image paths, an image folder or HEST .h5",
         true, ""},
        {"out", "X.npy", "output array (float32 [N, C, H, W]); X.index.csv is written beside it", true, ""},
        {"model", "NAME", "the tensors `embed --model NAME` feeds the model (its card's transform)", false, ""},
        {"arch", "ARCH", "the tensors `embed --arch ARCH` feeds the model (its reference transform)", false, ""},
        {"no-illum", "", "ignore the illumination functions of a load_data.csv", false, ""},
        {"limit", "N", "first N samples only (-1: all)", false, "-1"},
        {"threads", "T", "decode/preprocess threads", false, "2"}}),
       0, 0, cmd_preprocess},
      {"models", "list architectures (parameters, GFLOPs at the default size, default taps), or the model cards",
       "[ARCH...] [--trained]", "tabula models --trained",
       {{"trained", "", "list the model cards: name, arch, parameters, weights source, transform, embedding rule",
         false, ""}},
       0, 1000, cmd_models},
      {"hooks", "list every tap of an architecture with its output shape", "ARCH [--size S] [--batch B]",
       "tabula hooks vit_base_patch16_224",
       {{"size", "S", "input height = width (default: the arch's default input size)", false, ""},
        {"batch", "B", "batch size in the shapes", false, "1"}},
       1, 1, cmd_hooks},
      {"bench", "forward throughput of an architecture (images/s, ms/batch, peak RSS)",
       "ARCH [--batch B] [--threads T] [--seed N | --weights F] [--iters I] [--warmup W]",
       "tabula bench resnet50 --batch 16 --threads 2",
       {{"batch", "B", "images per forward", false, "16"},
        {"threads", "T", "CPU threads (0: TABULA_THREADS or all cores)", false, "0"},
        {"seed", "N", "untrained weights of this seed (torch.manual_seed)", false, "0"},
        {"weights", "FILE", "trained weights instead (safetensors / torch checkpoint; load time reported)", false, ""},
        {"key", "K", "nested checkpoint entry (teacher, model, ...)", false, ""},
        {"iters", "I", "timed forwards (the median is reported)", false, "5"},
        {"warmup", "W", "untimed forwards first", false, "2"},
        {"size", "S", "input height = width (0: the arch's default)", false, "0"},
        {"device", "D", "cpu | cuda[:N]", false, "cpu"},
        {"precision", "P", "fp32|bf16 (cpu: bf16 needs AVX512-BF16); fp32|tf32|bf16|fp16 on cuda", false, "fp32"},
        {"graph", "", "cuda: capture the forward as one CUDA graph and time its replays", false, ""},
        {"streamed", "IN.npy", "no timing loop: the fp32 reference forward of --seed's weights on IN.npy [N, C, H, W], "
                               "one block's weights in memory at a time (DINOv3, e.g. the 7B); needs --out", false, ""},
        {"out", "OUT.npy", "--streamed: where x_norm_clstoken [N, D] goes", false, ""}},
       1, 1, cmd_bench},
  };
  return table;
}

// An output file (--out FILE) goes into its folder, made if missing, as the output folders of embed, eval and
// report are: `tabula init resnet50 --seed 0 --out weights/r50.safetensors` works on a fresh checkout.
static void create_out_parent(const Command& cmd, const Args& args) {
  const auto out = std::find_if(cmd.flags.begin(), cmd.flags.end(), [](const Flag& f) { return f.name == "out"; });
  if (out == cmd.flags.end() || out->value_name == "DIR" || !args.has("out")) return;
  if (std::filesystem::is_directory(args.get("out"))) {  // e.g. `report study --out study`
    const std::string example = cmd.name == "report" ? "report.html"
                                : cmd.name == "preprocess" || cmd.name == "bench" ? "x.npy"
                                                                                   : "weights.safetensors";
    throw UsageError("tabula " + cmd.name + ": --out " + args.get("out") + " is a folder; name the file to write (" +
                     (std::filesystem::path(args.get("out")) / example).string() + ", say)");
  }
  // A weights file is hours of someone's training or download: init and convert keep one unless told (--force).
  const bool guarded = std::any_of(cmd.flags.begin(), cmd.flags.end(), [](const Flag& f) { return f.name == "force"; });
  if (guarded && !args.has("force") && std::filesystem::exists(args.get("out")))
    throw std::runtime_error(args.get("out") + ": exists; use --force to overwrite it, or another --out");
  const std::filesystem::path parent = std::filesystem::path(args.get("out")).parent_path();
  // A folder that cannot be made is reported when the file is created (AtomicFile names it), after the inputs
  // have been checked: a bad input is the more useful message.
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
}

// An error's one line. std::filesystem's "filesystem error: cannot create directories: Permission denied [DIR]"
// reads as the others do: "DIR: cannot create directories: Permission denied".
static std::string error_text(const std::exception& e) {
  const auto* fe = dynamic_cast<const std::filesystem::filesystem_error*>(&e);
  if (!fe || fe->path1().empty()) return e.what();
  std::string what = fe->what();
  const std::string prefix = "filesystem error: ";
  if (what.rfind(prefix, 0) == 0) what = what.substr(prefix.size());
  const size_t bracket = what.find(" [");
  if (bracket != std::string::npos) what = what.substr(0, bracket);
  return fe->path1().string() + ": " + what;
}

static void print_overview() {
  std::cout << "tabula: what vision backbones learn on microscopy images\n\n"
               "usage: tabula COMMAND [flags]      (tabula COMMAND --help for its flags and an example)\n\n"
               "commands:\n";
  for (const Command& c : commands()) {
    std::string left = "  " + c.name;
    std::cout << left << std::string(left.size() < 22 ? 22 - left.size() : 1, ' ') << c.summary << "\n";
  }
  std::cout << "\n  --version           version, git hash, build type, CPU features, CUDA/MPI\n";
}

int run_tabula(int argc, char** argv) {
  try {
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ||
        std::string(argv[1]) == "help") {
      print_overview();
      return argc < 2 ? 2 : 0;
    }
    std::string first = argv[1];
    if (first == "--version" || first == "version") {
      std::cout << build_summary();
      return 0;
    }
    // Longest match: "weights inspect" before "weights".
    const Command* cmd = nullptr;
    int consumed = 0;
    if (argc >= 3) {
      std::string two = first + " " + argv[2];
      for (const Command& c : commands())
        if (c.name == two) cmd = &c, consumed = 2;
    }
    if (!cmd)
      for (const Command& c : commands())
        if (c.name == first) cmd = &c, consumed = 1;
    if (!cmd) {
      std::vector<std::string> members, names;
      for (const Command& c : commands()) {
        names.push_back(c.name.substr(0, c.name.find(' ')));
        if (c.name.rfind(first + " ", 0) == 0) members.push_back(c.name);
      }
      const bool sub = argc >= 3 && std::string(argv[2]).rfind("-", 0) != 0;
      if (!members.empty() && sub) {
        // "tabula eval mAP": a member of the group, mistyped.
        const std::string typed = first + " " + argv[2];
        std::vector<std::string> near = closest(typed, members, 2);
        std::string hint = " (see 'tabula " + first + "')";
        if (!near.empty())
          hint = " (did you mean '" + near[0] + "'" + (near.size() > 1 ? " or '" + near[1] + "'" : "") + "?)";
        std::cerr << "tabula: unknown command '" << typed << "'" << hint << "\n";
        return 2;
      }
      if (!members.empty()) {
        // A group name alone ("tabula eval") lists its members.
        std::cout << "tabula " << first << " subcommands:\n";
        for (const Command& c : commands())
          if (c.name.rfind(first + " ", 0) == 0)
            std::cout << "  " << c.name << std::string(c.name.size() < 22 ? 22 - c.name.size() : 1, ' ') << c.summary
                      << "\n";
        return argc >= 3 && std::string(argv[2]) != "--help" && std::string(argv[2]) != "-h" ? 2 : 0;
      }
      std::vector<std::string> near = closest(first, names, 2);
      std::string hint = " (see 'tabula --help')";
      if (!near.empty())
        hint = " (did you mean '" + near[0] + "'" + (near.size() > 1 ? " or '" + near[1] + "'" : "") + "?)";
      std::cerr << "tabula: unknown command '" << first << "'" << hint << "\n";
      return 2;
    }
    for (int i = 1 + consumed; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::cout << command_help(*cmd);
        return 0;
      }
      if (a == "--") break;
    }
    Args args = parse_args(*cmd, argc, argv, 1 + consumed);
    // A mistyped device or precision, or a negative thread count, is a usage error before any work.
    if (args.has("device")) check_device_name(cmd->name, args.get("device"));
    if (args.has("precision")) check_precision_name(cmd->name, args.get("precision"));
    if (args.has("threads") && args.get_int("threads") < 0)
      throw UsageError("tabula " + cmd->name + ": --threads must be >= 0 (0: all cores), got " + args.get("threads"));
    create_out_parent(*cmd, args);
    int rc = cmd->run(args);
    mpi::finalize();
    return rc;
  } catch (const UsageError& e) {
    std::cerr << e.what() << "\n";
    if (mpi::active()) mpi::abort(2);
    return 2;
  } catch (const SettingError& e) {
    // A setting typed that cannot work (an unknown tap, a pooling the tap does not allow): a usage error too.
    std::cerr << "tabula: error: " << e.what() << "\n";
    if (mpi::active()) mpi::abort(2);
    return 2;
  } catch (const std::exception& e) {
    // One rank of an MPI job: say which, and stop the others (they would wait for it forever); the journals keep
    // what was done for --resume.
    if (mpi::active()) {
      std::cerr << "tabula: error (rank " << mpi::world().rank << "/" << mpi::world().size << " on "
                << mpi::world().host << "): " << error_text(e) << "\n";
      mpi::abort(1);
    }
    std::cerr << "tabula: error: " << error_text(e) << "\n";
    return 1;
  }
}

}  // namespace tabula::cli
