// "Did you mean": edit distance with '_' = '-' and case ignored, only the best distance, nearest number first.
#include <gtest/gtest.h>

#include "util/suggest.h"

using tabula::closest;
using tabula::did_you_mean;
using tabula::edit_distance;

TEST(Suggest, EditDistance) {
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("pos_sameby", "pos-sameby"), 0u);
  EXPECT_EQ(edit_distance("mAP", "map"), 0u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
}

TEST(Suggest, OnlyTheClosestAndOnlyWhenClose) {
  const std::vector<std::string> taps = {"conv1", "layer1", "layer2", "layer3", "layer4", "avgpool"};
  EXPECT_EQ(closest("layer5", taps), (std::vector<std::string>{"layer4", "layer3", "layer2"}));
  EXPECT_EQ(closest("layer5", taps, 1), (std::vector<std::string>{"layer4"}));
  EXPECT_TRUE(closest("blocks.3", taps).empty());
  EXPECT_EQ(did_you_mean("pos_sameby", {"pos-sameby", "neg-sameby"}, "--"), " (did you mean --pos-sameby?)");
  EXPECT_EQ(did_you_mean("resnet5", {"resnet18", "resnet50", "resnet101"}), " (did you mean resnet50?)");
  EXPECT_EQ(did_you_mean("embd", {"embed", "eval", "merge"}), " (did you mean embed?)");
  EXPECT_EQ(did_you_mean("zzzz", {"embed", "eval"}), "");
  // The exact name is no suggestion; another case of it is.
  EXPECT_TRUE(closest("map", {"map"}).empty());
  EXPECT_EQ(closest("mAP", {"map", "knn"}), (std::vector<std::string>{"map"}));
}
