// The README's commands, run: every `tabula ...` line of README.md's code blocks (continuation lines joined) runs
// on synthetic data made with `tabula synth`, in the order the README gives them, and must exit 0, so the docs and
// the tool cannot drift apart. Real paths map to synthetic ones (kPathMap); embeds get `--size 32` so a ResNet-50
// sweep takes a second. Commands that cannot run here are skipped by the explicit list kSkip, each printed with its
// reason; an entry of kSkip that matches no README command fails the test (the list cannot go stale).
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "engine/fileio.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using tabula::test::run_tabula;

namespace {

struct Skip {
  const char* pattern;  // a regex searched in the command
  const char* reason;
};

const std::vector<Skip> kSkip = {
    {"--device cuda", "needs a CUDA device (the GPU tests cover embed --device cuda)"},
    {"--weights dinov2_vits14_pretrain\\.pth", "needs the downloaded DINOv2 checkpoint"},
    {"^tabula report tabula-demo", "reads a `tabula demo` folder (the study tests run demo + report)"},
    {"^tabula merge emb/r50/shard-\\*", "joins the Slurm array's shards, which need a GPU (tests/embed merges shards)"},
    {"^srun |^mpirun ", "needs an MPI launcher and a cluster (tests/embed/test_mpi.cpp runs mpirun where present)"},
    {"^tabula study ", "runs every layer of full-size networks and trained weights (tests/study/test_study.cpp runs "
                       "`tabula study` through the binary on synthetic Cell Painting, tissue and ImageFolder sets)"},
    {"\\$TASK/patches|emb/idc-", "the HEST-1k walkthrough: needs the downloaded IDC patches and the H-optimus-0 "
                                  "weights (tests/cli/test_cli_cards.cpp runs the card on its fixture)"},
};

// README path -> synthetic path (relative to the working folder).
const std::vector<std::pair<std::string, std::string>> kPathMap = {
    {"jump/load_data.csv", "cp/load_data.csv"},
    {"load_data.csv", "cp/load_data.csv"},
};

std::string readme_path() { return (tabula::test::fixture("") / ".." / ".." / "README.md").string(); }

// The command lines of the README's code blocks that run tabula (`build/tabula` as `tabula`), continuation lines
// joined, comments dropped.
std::vector<std::string> readme_commands() {
  std::vector<std::string> out;
  std::istringstream in(tabula::read_file_text(readme_path()));
  std::string line, pending;
  bool code = false;
  while (std::getline(in, line)) {
    if (line.rfind("```", 0) == 0) {
      code = !code;
      continue;
    }
    if (!code) continue;
    std::string t = std::regex_replace(line, std::regex(R"(^\s+|\s+$)"), "");
    if (pending.empty() && (t.empty() || t[0] == '#')) continue;
    const bool more = !t.empty() && t.back() == '\\';
    if (more) t.pop_back();
    if (!pending.empty()) pending += ' ';
    pending += std::regex_replace(t, std::regex(R"(\s+$)"), "");
    if (more) continue;
    std::string cmd = std::regex_replace(pending, std::regex(R"(^build/tabula )"), "tabula ");
    if (std::regex_search(cmd, std::regex(R"((^|\s)tabula\s)"))) out.push_back(cmd);
    pending.clear();
  }
  return out;
}

std::string map_paths(std::string cmd) {
  for (const auto& [real, synth] : kPathMap) {
    const std::string escaped = std::regex_replace(real, std::regex(R"([./])"), R"(\$&)");
    cmd = std::regex_replace(cmd, std::regex(std::string("(--data )") + escaped + "(\\s|$)"),
                             std::string("$1") + synth + "$2");
  }
  if (cmd.rfind("tabula embed ", 0) == 0) cmd += " --size 32";
  return cmd;
}

}  // namespace

TEST(Readme, EveryCommandRunsOnSyntheticData) {
  const std::vector<std::string> cmds = readme_commands();
  ASSERT_GE(cmds.size(), 8u) << "the README's code blocks were not found or not parsed";
  const fs::path work = tabula::test::scratch_dir().string() + "-work";
  fs::remove_all(work);
  fs::create_directories(work);
  // JUMP-style: 2 plates of 32 wells, one site, 64 px (Metadata_JCP2022, Metadata_pert_type = negcon for DMSO).
  std::string synth = "synth cellpainting --size 64 --batches 1 --plates 2 --sites 1 --out '";
  synth += (work / "cp").string();
  synth += '\'';
  auto r = run_tabula(synth);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<bool> used(kSkip.size(), false);
  int ran = 0;
  for (const std::string& readme_cmd : cmds) {
    bool skipped = false;
    for (size_t k = 0; k < kSkip.size() && !skipped; ++k) {
      if (!std::regex_search(readme_cmd, std::regex(kSkip[k].pattern))) continue;
      used[k] = skipped = true;
      std::cout << "[ skipped ] " << readme_cmd << "\n            (" << kSkip[k].reason << ")\n";
    }
    if (skipped) continue;
    const std::string cmd = map_paths(readme_cmd);
    ASSERT_EQ(cmd.rfind("tabula ", 0), 0u) << "a README command this test cannot run and does not skip: " << cmd;
    std::cout << "[ running ] " << cmd << "\n";
    r = tabula::test::run_tabula_prefixed(std::string("cd '") + work.string() + "' && ", cmd.substr(7));
    EXPECT_EQ(r.exit_code, 0) << "README command failed: " << readme_cmd << "\n  ran: " << cmd << "\n" << r.err;
    ++ran;
  }
  for (size_t k = 0; k < kSkip.size(); ++k)
    EXPECT_TRUE(used[k]) << "kSkip entry '" << kSkip[k].pattern << "' matches no README command: remove it";
  EXPECT_GE(ran, 4) << "fewer README commands ran than expected";
}
