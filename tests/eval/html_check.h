// A strict well-formedness check of the report's HTML + inline SVG, shared by the demo and report tests.
#pragma once
#include <algorithm>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace tabula::test {
// Tags balance (HTML void elements and <!DOCTYPE> aside), attributes are quoted, entities are closed: what a
// browser or an XML parser needs to read the inline SVG without recovery.
inline std::string well_formed(const std::string& html) {
  static const std::set<std::string> void_tags = {"meta", "br", "img", "hr", "link", "input"};
  std::vector<std::string> stack;
  size_t i = 0;
  while ((i = html.find('<', i)) != std::string::npos) {
    size_t end = html.find('>', i);
    if (end == std::string::npos) return "unclosed '<' at " + std::to_string(i);
    std::string tag = html.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.rfind("!", 0) == 0) continue;
    if (std::count(tag.begin(), tag.end(), '"') % 2) return "odd quotes in <" + tag + ">";
    bool closing = tag[0] == '/', self = tag.back() == '/';
    std::string name = tag.substr(closing ? 1 : 0);
    name = name.substr(0, name.find_first_of(" /"));
    if (closing) {
      if (stack.empty() || stack.back() != name) return "</" + name + "> closes <" + (stack.empty() ? "" : stack.back()) + ">";
      stack.pop_back();
    } else if (!self && !void_tags.count(name)) {
      stack.push_back(name);
    }
  }
  if (!stack.empty()) return "<" + stack.back() + "> never closed";
  std::regex bad_amp("&(?![a-z]+;|#[0-9]+;)");
  if (std::regex_search(html, bad_amp)) return "bare '&'";
  return "";
}

}  // namespace tabula::test
