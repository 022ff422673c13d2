/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The "where" compiler and matcher (shard-filter.h). Pure: shard-search asks it about rows that
 * would enter a top-k heap; test-shard-filter drives it with tables of metadata and filters. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "shard-filter.h"

#define NIL UINT16_MAX

typedef enum FilterOp {
        FILTER_AND,
        FILTER_OR,
        FILTER_EQ,
        FILTER_NE,
        FILTER_IN,
        FILTER_NIN,
        FILTER_GT,
        FILTER_GTE,
        FILTER_LT,
        FILTER_LTE,
} FilterOp;

static const struct {
        const char *name;
        FilterOp op;
} field_ops[] = {
        { "$eq", FILTER_EQ },
        { "$ne", FILTER_NE },
        { "$in", FILTER_IN },
        { "$nin", FILTER_NIN },
        { "$gt", FILTER_GT },
        { "$gte", FILTER_GTE },
        { "$lt", FILTER_LT },
        { "$lte", FILTER_LTE },
};

/* A scalar of the filter or of the metadata, converted once so matching does not go through
 * json-c's getters for every row. */
typedef enum ValueKind {
        VALUE_OTHER,            /* null, array, object: equal to nothing, ordered with nothing */
        VALUE_STRING,
        VALUE_INT,
        VALUE_DOUBLE,
        VALUE_BOOL,
} ValueKind;

typedef struct FilterValue {
        ValueKind kind;
        union {
                const char *s;  /* owned by the filter in its values; borrowed in metadata's */
                int64_t i;
                double d;
                bool b;
        };
} FilterValue;

typedef struct FilterNode {
        FilterOp op;
        uint16_t child;         /* $and/$or: first child, NIL for none */
        uint16_t next;          /* the next child of the same $and/$or */
        char *field;            /* leaves */
        FilterValue *values;    /* leaves: one, or the list of $in/$nin */
        size_t n_values;
} FilterNode;

struct ShardFilter {
        FilterNode *nodes;
        size_t n_nodes;
        size_t cost;            /* conditions counted against SHARD_FILTER_NODES_MAX */
        uint16_t root;
        char *error;            /* while compiling: the first error's message */
};

/* Outcomes of comparing two values. EQ/LT/GT: ordered kinds (numbers, strings); SAME and
 * DIFFERENT: equality only (bools, or kinds that do not compare at all). */
enum {
        CMP_LT = -1,
        CMP_EQ = 0,
        CMP_GT = 1,
        CMP_SAME = 2,
        CMP_DIFFERENT = 3,
};

static void value_from_json(json_object *v, FilterValue *ret) {
        switch (json_object_get_type(v)) {
        case json_type_string:
                *ret = (FilterValue) { .kind = VALUE_STRING, .s = json_object_get_string(v) };
                break;
        case json_type_int:
                /* json-c keeps integers above INT64_MAX as uint64; they compare as doubles. */
                if (json_object_get_int64(v) == INT64_MAX && json_object_get_uint64(v) > INT64_MAX)
                        *ret = (FilterValue) { .kind = VALUE_DOUBLE, .d = (double) json_object_get_uint64(v) };
                else
                        *ret = (FilterValue) { .kind = VALUE_INT, .i = json_object_get_int64(v) };
                break;
        case json_type_double:
                *ret = (FilterValue) { .kind = VALUE_DOUBLE, .d = json_object_get_double(v) };
                break;
        case json_type_boolean:
                *ret = (FilterValue) { .kind = VALUE_BOOL, .b = json_object_get_boolean(v) };
                break;
        default:
                *ret = (FilterValue) { .kind = VALUE_OTHER };
        }
}

static int sign(int c) {
        return (c > 0) - (c < 0);
}

/* Exact, where converting i to double would round beyond 2^53. */
static int compare_int_double(int64_t i, double d) {
        int64_t t;
        double frac;

        if (isnan(d))
                return CMP_DIFFERENT;
        if (d >= 0x1p63)
                return CMP_LT;
        if (d < -0x1p63)
                return CMP_GT;
        t = (int64_t) d;
        if (i != t)
                return i < t ? CMP_LT : CMP_GT;
        frac = d - (double) t;
        return frac > 0 ? CMP_LT : frac < 0 ? CMP_GT : CMP_EQ;
}

/* The outcome of compare(b, a) from that of compare(a, b). */
static int compare_flip(int c) {
        return IN_SET(c, CMP_LT, CMP_GT) ? -c : c;
}

static int compare_double(double a, double b) {
        if (isnan(a) || isnan(b))
                return CMP_DIFFERENT;
        return a < b ? CMP_LT : a > b ? CMP_GT : CMP_EQ;
}

static int value_compare(const FilterValue *a, const FilterValue *b) {
        switch (a->kind) {
        case VALUE_STRING:
                return b->kind == VALUE_STRING ? sign(strcmp(a->s, b->s)) : CMP_DIFFERENT;
        case VALUE_INT:
                if (b->kind == VALUE_INT)
                        return a->i < b->i ? CMP_LT : a->i > b->i ? CMP_GT : CMP_EQ;
                if (b->kind == VALUE_DOUBLE)
                        return compare_int_double(a->i, b->d);
                return CMP_DIFFERENT;
        case VALUE_DOUBLE:
                if (b->kind == VALUE_DOUBLE)
                        return compare_double(a->d, b->d);
                if (b->kind == VALUE_INT)
                        return compare_flip(compare_int_double(b->i, a->d));
                return CMP_DIFFERENT;
        case VALUE_BOOL:
                if (b->kind != VALUE_BOOL)
                        return CMP_DIFFERENT;
                return a->b == b->b ? CMP_SAME : CMP_DIFFERENT;
        default:
                return CMP_DIFFERENT;
        }
}

static bool value_equal(const FilterValue *a, const FilterValue *b) {
        return IN_SET(value_compare(a, b), CMP_EQ, CMP_SAME);
}

static bool leaf_match(const FilterNode *n, json_object *metadata) {
        json_object *v;
        FilterValue m;
        int c;

        if (!metadata || !json_object_object_get_ex(metadata, n->field, &v))
                return IN_SET(n->op, FILTER_NE, FILTER_NIN);
        value_from_json(v, &m);
        switch (n->op) {
        case FILTER_EQ:
                return value_equal(&m, &n->values[0]);
        case FILTER_NE:
                return !value_equal(&m, &n->values[0]);
        case FILTER_IN:
        case FILTER_NIN:
                for (size_t i = 0; i < n->n_values; i++)
                        if (value_equal(&m, &n->values[i]))
                                return n->op == FILTER_IN;
                return n->op == FILTER_NIN;
        default:
                break;
        }
        c = value_compare(&m, &n->values[0]);
        switch (n->op) {
        case FILTER_GT:
                return c == CMP_GT;
        case FILTER_GTE:
                return IN_SET(c, CMP_GT, CMP_EQ);
        case FILTER_LT:
                return c == CMP_LT;
        case FILTER_LTE:
                return IN_SET(c, CMP_LT, CMP_EQ);
        default:
                return false;
        }
}

static bool node_match(const ShardFilter *f, uint16_t i, json_object *metadata) {
        const FilterNode *n = &f->nodes[i];

        if (n->op == FILTER_AND) {
                for (uint16_t c = n->child; c != NIL; c = f->nodes[c].next)
                        if (!node_match(f, c, metadata))
                                return false;
                return true;
        }
        if (n->op == FILTER_OR) {
                for (uint16_t c = n->child; c != NIL; c = f->nodes[c].next)
                        if (node_match(f, c, metadata))
                                return true;
                return false;
        }
        return leaf_match(n, metadata);
}

bool shard_filter_match(const ShardFilter *f, json_object *metadata) {
        return node_match(f, f->root, metadata);
}

ShardFilter *shard_filter_free(ShardFilter *f) {
        if (!f)
                return NULL;
        for (size_t i = 0; i < f->n_nodes; i++) {
                FilterNode *n = &f->nodes[i];

                for (size_t j = 0; j < n->n_values; j++)
                        if (n->values[j].kind == VALUE_STRING)
                                free((char *) n->values[j].s);
                free(n->values);
                free(n->field);
        }
        free(f->nodes);
        free(f->error);
        free(f);
        return NULL;
}

/* ---- compiling: recursive descent over the JSON, every error a message for the client ---- */

_printf_(2, 3) static int compile_error(ShardFilter *f, const char *format, ...) {
        va_list ap;
        int r;

        /* Only the first: the one the client can act on. */
        if (f->error)
                return -EINVAL;
        va_start(ap, format);
        r = vasprintf(&f->error, format, ap);
        va_end(ap);
        if (r < 0) {
                f->error = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

/* A new node of the given cost; its index, or -EINVAL past the budget. */
static int node_new(ShardFilter *f, FilterOp op, size_t cost) {
        FilterNode *n;

        if (f->cost + cost > SHARD_FILTER_NODES_MAX || f->n_nodes >= SHARD_FILTER_NODES_MAX)
                return compile_error(f, "where: more than %d conditions", SHARD_FILTER_NODES_MAX);
        f->cost += cost;
        n = &f->nodes[f->n_nodes];
        *n = (FilterNode) { .op = op, .child = NIL, .next = NIL };
        return (int) f->n_nodes++;
}

/* Appends child to the children of group (a $and/$or), keeping their order. */
static void node_adopt(ShardFilter *f, uint16_t group, uint16_t *last, uint16_t child) {
        if (*last == NIL)
                f->nodes[group].child = child;
        else
                f->nodes[*last].next = child;
        *last = child;
}

/* The conditions of one object: the condition itself when there is one, else an $and of them
 * (of none for {}, which then matches everything). */
typedef struct Conjunction {
        int group;              /* the $and, or -1 */
        int only;               /* the one condition without it */
        uint16_t last;
} Conjunction;

static int conjunction_start(ShardFilter *f, Conjunction *c, size_t n_conditions) {
        *c = (Conjunction) { .group = -1, .only = -1, .last = NIL };
        if (n_conditions != 1) {
                c->group = node_new(f, FILTER_AND, 1);
                if (c->group < 0)
                        return c->group;
        }
        return 0;
}

/* Takes the result of compiling one condition: its node, or an error passed on. */
static int conjunction_add(ShardFilter *f, Conjunction *c, int r) {
        if (r < 0)
                return r;
        if (c->group < 0)
                c->only = r;
        else
                node_adopt(f, (uint16_t) c->group, &c->last, (uint16_t) r);
        return 0;
}

static int conjunction_end(const Conjunction *c) {
        return c->group >= 0 ? c->group : c->only;
}

static int operand_from_json(ShardFilter *f, const char *field, const char *op, json_object *v,
                             FilterValue *ret) {
        value_from_json(v, ret);
        if (ret->kind == VALUE_OTHER)
                return compile_error(f, "where: %s on \"%.100s\" takes a string, number or bool", op, field);
        if (ret->kind == VALUE_DOUBLE && !isfinite(ret->d))
                return compile_error(f, "where: %s on \"%.100s\" takes a finite number", op, field);
        if (ret->kind == VALUE_STRING) {
                ret->s = strdup(ret->s);
                if (!ret->s) {
                        ret->kind = VALUE_OTHER;
                        return -ENOMEM;
                }
        }
        return 0;
}

/* One operator on a field: a leaf. */
static int compile_leaf(ShardFilter *f, const char *field, const char *opname, json_object *operand) {
        FilterOp op = FILTER_EQ;
        bool found = false, list;
        size_t n_values = 1;
        FilterNode *n;
        int i, r;

        for (size_t j = 0; j < ELEMENTSOF(field_ops); j++)
                if (streq(field_ops[j].name, opname)) {
                        op = field_ops[j].op;
                        found = true;
                }
        if (!found)
                return compile_error(f, "where: unknown operator \"%.100s\" on \"%.100s\"", opname, field);
        list = IN_SET(op, FILTER_IN, FILTER_NIN);
        if (list) {
                if (!json_object_is_type(operand, json_type_array) ||
                    (n_values = json_object_array_length(operand)) == 0)
                        return compile_error(f, "where: %s on \"%.100s\" takes a non-empty array", opname, field);
        }
        i = node_new(f, op, n_values);
        if (i < 0)
                return i;
        n = &f->nodes[i];
        n->field = strdup(field);
        n->values = calloc(n_values, sizeof(FilterValue));
        if (!n->field || !n->values)
                return -ENOMEM;
        for (size_t j = 0; j < n_values; j++) {
                r = operand_from_json(f, field, opname, list ? json_object_array_get_idx(operand, j) : operand,
                                      &n->values[j]);
                /* Counted as they are filled, so free() releases exactly the strings made. */
                n->n_values = j + (r >= 0);
                if (r < 0)
                        return r;
        }
        return i;
}

static int compile_object(ShardFilter *f, json_object *where, unsigned depth);

/* The operand of {"field": operand}: a value ($eq), or an object of operators, all of which
 * must hold. */
static int compile_field(ShardFilter *f, const char *field, json_object *operand, unsigned depth) {
        Conjunction c;
        int r;

        if (!json_object_is_type(operand, json_type_object))
                return compile_leaf(f, field, "$eq", operand);
        if (depth + 1 > SHARD_FILTER_DEPTH_MAX)
                return compile_error(f, "where: nested deeper than %d levels", SHARD_FILTER_DEPTH_MAX);
        if (json_object_object_length(operand) == 0)
                return compile_error(f, "where: no operator for \"%.100s\"", field);
        r = conjunction_start(f, &c, (size_t) json_object_object_length(operand));
        if (r < 0)
                return r;
        json_object_object_foreach(operand, opname, v) {
                if (opname[0] != '$')
                        return compile_error(f, "where: \"%.100s\" takes a value or operators like \"$eq\", not \"%.100s\"",
                                             field, opname);
                r = conjunction_add(f, &c, compile_leaf(f, field, opname, v));
                if (r < 0)
                        return r;
        }
        return conjunction_end(&c);
}

static int compile_group(ShardFilter *f, FilterOp op, const char *name, json_object *list, unsigned depth) {
        uint16_t last = NIL;
        size_t n;
        int group;

        if (!json_object_is_type(list, json_type_array) || (n = json_object_array_length(list)) == 0)
                return compile_error(f, "where: %s takes a non-empty array of filters", name);
        group = node_new(f, op, 1);
        if (group < 0)
                return group;
        for (size_t i = 0; i < n; i++) {
                int r = compile_object(f, json_object_array_get_idx(list, i), depth + 1);

                if (r < 0)
                        return r;
                node_adopt(f, (uint16_t) group, &last, (uint16_t) r);
        }
        return group;
}

/* A filter object: every key a condition, all of which must hold. */
static int compile_object(ShardFilter *f, json_object *where, unsigned depth) {
        Conjunction c;
        int r;

        if (!json_object_is_type(where, json_type_object))
                return compile_error(f, "where: a filter must be a JSON object");
        if (depth > SHARD_FILTER_DEPTH_MAX)
                return compile_error(f, "where: nested deeper than %d levels", SHARD_FILTER_DEPTH_MAX);
        r = conjunction_start(f, &c, (size_t) json_object_object_length(where));
        if (r < 0)
                return r;
        json_object_object_foreach(where, key, v) {
                if (streq(key, "$and"))
                        r = compile_group(f, FILTER_AND, key, v, depth);
                else if (streq(key, "$or"))
                        r = compile_group(f, FILTER_OR, key, v, depth);
                else if (key[0] == '$')
                        r = compile_error(f, "where: unknown operator \"%.100s\"", key);
                else
                        r = compile_field(f, key, v, depth);
                r = conjunction_add(f, &c, r);
                if (r < 0)
                        return r;
        }
        return conjunction_end(&c);
}

int shard_filter_compile(json_object *where, ShardFilter **ret, char **ret_error) {
        _cleanup_(shard_filter_freep) ShardFilter *f = NULL;
        int r;

        f = calloc(1, sizeof(ShardFilter));
        if (!f)
                return -ENOMEM;
        f->nodes = calloc(SHARD_FILTER_NODES_MAX, sizeof(FilterNode));
        if (!f->nodes)
                return -ENOMEM;
        r = compile_object(f, where, 1);
        if (r < 0) {
                if (r == -EINVAL && ret_error)
                        *ret_error = TAKE_PTR(f->error);
                return r;
        }
        f->root = (uint16_t) r;
        *ret = TAKE_PTR(f);
        return 0;
}
