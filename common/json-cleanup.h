/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* _cleanup_ for json-c's objects and tokeners, so every user frees them the same way. */
#pragma once

#include <json-c/json.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);
DEFINE_TRIVIAL_CLEANUP_FUNC(json_tokener *, json_tokener_free);
