#pragma once

// Numbers for people: the start-up line of `pantry serve` (app.cpp) and the pantry command's
// reports (cache stats, cache warm) print sizes the same way.

#include "pantry/text.h"

namespace pantry::app {

// pantry/text.h's, under the name app's callers know.
using pantry::human_bytes;

}  // namespace pantry::app
