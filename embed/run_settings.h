// The settings of an embedding run as run.json records them, and what changed between two runs, said by flag:
// `--resume` compares the settings stored with a run (run.json of a finished folder, .partial/settings.json of an
// unfinished one) with those of the command now, and refuses naming each difference ("--seed: 0 in
// emb/run.json, 1 now") instead of continuing a run with other settings.
#pragma once
#include <string>

#include "util/json.h"

namespace tabula {

// The entries of run.json that determine the numbers: all but "threads" (never changes a bit), "tabula" (the
// build; a finished folder is not stale because the binary was rebuilt) and "aggregate" (written at the end).
json::Value keyed_settings(const json::Value& run);

// One "--flag: STORED in WHERE, NOW now" per differing setting, joined by "; ", or "" when the keyed settings agree.
std::string describe_changes(const json::Value& stored, const json::Value& now, const std::string& where);

}  // namespace tabula
