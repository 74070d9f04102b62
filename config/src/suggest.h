#pragma once

// Now part of the public YAML reader; see reader.h.

#include "reader.h"
