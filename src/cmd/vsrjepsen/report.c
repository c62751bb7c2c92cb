/* report.c - what a run shows: lost writes, availability, and the results folder.
 *
 * Files written per run: history.jsonl (one operation per line), nemesis.jsonl
 * (one fault per line, with start and end), verdict.json, summary.txt, and
 * timeline.html (an SVG with one lane per client, each operation a bar
 * coloured by outcome, faults as labelled bands, stretches without a
 * connected majority shaded). */
#include "jepsen.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static bool jp_is_write_of(const lincheck_op *op, int64_t v)
{
	if (op->f == LINCHECK_WRITE)
		return op->value == v && op->outcome != LINCHECK_FAIL;
	if (op->f == LINCHECK_CAS)
		return op->value2 == v && op->outcome != LINCHECK_FAIL;
	return false;
}

static bool jp_acked_write(const lincheck_op *op)
{
	return op->outcome == LINCHECK_OK && (op->f == LINCHECK_WRITE || op->f == LINCHECK_CAS);
}

/* After healing each key's final value must come from a write that no
 * acknowledged write followed in real time; a final nil with an acknowledged
 * write, or a value nobody wrote, is a loss too. */
void jp_report_lost(const jp_op *h, size_t n, uint32_t first_final, jp_verdict *v)
{
	for (size_t f = first_final; f < n; f++) {
		const lincheck_op *fin = &h[f].op;
		const lincheck_op *writer = NULL;
		if (fin->value != LINCHECK_NIL)
			for (size_t i = 0; i < first_final && writer == NULL; i++)
				if (h[i].op.key == fin->key && jp_is_write_of(&h[i].op, fin->value))
					writer = &h[i].op;
		const lincheck_op *later = NULL;
		for (size_t i = 0; i < first_final && later == NULL; i++) {
			const lincheck_op *b = &h[i].op;
			if (b->key != fin->key || !jp_acked_write(b))
				continue;
			if (fin->value == LINCHECK_NIL)
				later = b;
			else if (writer != NULL && writer->outcome == LINCHECK_OK &&
				 b->call_ns > writer->return_ns)
				later = b;
		}
		bool lost = later != NULL || (fin->value != LINCHECK_NIL && writer == NULL);
		if (!lost)
			continue;
		if (v->lost_writes++ == 0) {
			if (later != NULL)
				snprintf(v->lost_example, sizeof v->lost_example,
					 "key %" PRIu64 ": final value %" PRId64 ", but the write of %" PRId64
					 " acknowledged at %.3f s came later",
					 fin->key, fin->value, later->f == LINCHECK_WRITE ? later->value : later->value2,
					 (double)later->return_ns / 1e9);
			else
				snprintf(v->lost_example, sizeof v->lost_example,
					 "key %" PRIu64 ": final value %" PRId64 " was never written",
					 fin->key, fin->value);
		}
	}
}

static bool jp_majority_at(const jp_nemesis *nm, int64_t t)
{
	bool m = true;
	for (uint32_t i = 0; i < nm->conn_count && nm->conn[i].t_ns <= t; i++)
		m = nm->conn[i].majority;
	return m;
}

static int jp_cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static bool jp_completed(const lincheck_op *op)
{
	return op->outcome == LINCHECK_OK || (op->outcome == LINCHECK_FAIL && op->mismatch);
}

void jp_report_availability(const jp_op *h, size_t n, const jp_nemesis *nm, int64_t end_ns,
			    jp_verdict *v)
{
	int64_t *done = malloc((n ? n : 1) * sizeof *done);
	size_t k = 0;
	uint64_t maj = 0, maj_done = 0;
	for (size_t i = 0; i < n; i++) {
		const lincheck_op *op = &h[i].op;
		v->ops++;
		if (op->outcome == LINCHECK_OK)
			v->ok++;
		else if (op->outcome == LINCHECK_FAIL)
			v->fail++;
		else
			v->info++;
		if (jp_completed(op) && done != NULL)
			done[k++] = op->return_ns;
		if (jp_majority_at(nm, op->call_ns)) {
			maj++;
			maj_done += jp_completed(op);
		}
	}
	v->majority_ops = maj;
	v->availability = maj ? (double)maj_done / (double)maj : 0;
	if (done == NULL)
		return;
	qsort(done, k, sizeof *done, jp_cmp_i64);
	/* The load ends with the last call: a window reaching past it would
	 * count the clients' own stop as unavailability. */
	int64_t load_end = 0;
	for (size_t i = 0; i < n; i++)
		if (h[i].op.call_ns > load_end)
			load_end = h[i].op.call_ns;
	if (load_end < end_ns)
		end_ns = load_end;
	for (uint32_t e = 0; e < nm->event_count; e++) {
		const jp_event *ev = &nm->events[e];
		if (ev->fault < 0)
			continue;
		v->fault_count[ev->fault]++;
		/* From the fault's start to the first operation completed after
		 * its heal (the nemesis starts the next fault only once the
		 * cluster has settled, so this does not reach into it). */
		int64_t lo = ev->start_ns;
		int64_t heal = ev->end_ns ? ev->end_ns : end_ns;
		int64_t hi = end_ns;
		for (size_t i = 0; i < k; i++)
			if (done[i] >= heal) {
				hi = done[i] < end_ns ? done[i] : end_ns;
				break;
			}
		if (hi - heal > v->recovery_ns[ev->fault])
			v->recovery_ns[ev->fault] = hi - heal;
		int64_t prev = lo, gap = 0;
		for (size_t i = 0; i < k; i++) {
			if (done[i] < lo)
				continue;
			if (done[i] > hi)
				break;
			if (done[i] - prev > gap)
				gap = done[i] - prev;
			prev = done[i];
		}
		if (hi - prev > gap)
			gap = hi - prev;
		if (gap > v->gap_ns[ev->fault])
			v->gap_ns[ev->fault] = gap;
		bool alone = true;
		for (uint32_t o = 0; o < nm->event_count; o++) {
			const jp_event *x = &nm->events[o];
			int64_t x_end = x->end_ns ? x->end_ns : end_ns;
			if (o != e && x->fault >= 0 && x->start_ns < heal && x_end > lo)
				alone = false;
		}
		if (alone) {
			v->alone_count[ev->fault]++;
			if (gap > v->gap_alone_ns[ev->fault])
				v->gap_alone_ns[ev->fault] = gap;
		}
	}
	free(done);
}

/* ------------------------------------------------------------------------ */

static void jp_json_value(FILE *f, const char *name, int64_t v)
{
	if (v == LINCHECK_NIL)
		fprintf(f, ",\"%s\":null", name);
	else
		fprintf(f, ",\"%s\":%" PRId64, name, v);
}

static void jp_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

int jp_history_write(const char *path, const jp_op *h, size_t n)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const lincheck_op *op = &h[i].op;
		fprintf(f, "{\"client\":%u,\"key\":%" PRIu64 ",\"f\":\"%s\"", op->client, op->key,
			lincheck_f_name(op->f));
		jp_json_value(f, "value", op->value);
		if (op->f == LINCHECK_CAS)
			jp_json_value(f, "value2", op->value2);
		fprintf(f, ",\"outcome\":\"%s\"", lincheck_outcome_name(op->outcome));
		if (op->mismatch)
			fprintf(f, ",\"mismatch\":true");
		fprintf(f, ",\"call_ns\":%" PRId64 ",\"return_ns\":%" PRId64, op->call_ns,
			op->return_ns);
		if (h[i].note[0]) {
			fprintf(f, ",\"note\":");
			jp_json_string(f, h[i].note);
		}
		fprintf(f, "}\n");
	}
	return fclose(f) == 0 ? 0 : -1;
}

static int jp_name_index(const char *s, const char *(*name)(int), int count)
{
	for (int i = 0; i < count; i++)
		if (strcmp(s, name(i)) == 0)
			return i;
	return -1;
}

static int64_t jp_json_i64(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : LINCHECK_NIL;
}

jp_op *jp_history_read(const char *path, size_t *count, char *err, size_t err_len)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return NULL;
	}
	jp_op *h = NULL;
	size_t n = 0, cap = 0, line_no = 0;
	char *line = NULL;
	size_t line_cap = 0;
	while (getline(&line, &line_cap, f) > 0) {
		line_no++;
		json_error_t je;
		json_t *o = json_loads(line, 0, &je);
		const char *fs = o ? json_string_value(json_object_get(o, "f")) : NULL;
		const char *os = o ? json_string_value(json_object_get(o, "outcome")) : NULL;
		int fi = fs ? jp_name_index(fs, lincheck_f_name, 3) : -1;
		int oi = os ? jp_name_index(os, lincheck_outcome_name, 3) : -1;
		if (o == NULL || fi < 0 || oi < 0) {
			snprintf(err, err_len, "%s:%zu: expected an operation with f (read, write, cas) "
				 "and outcome (ok, fail, info)%s%s", path, line_no, o ? "" : ": ",
				 o ? "" : je.text);
			json_decref(o);
			free(h);
			free(line);
			fclose(f);
			return NULL;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			jp_op *nh = realloc(h, cap * sizeof *nh);
			if (nh == NULL)
				abort();
			h = nh;
		}
		jp_op *r = &h[n++];
		memset(r, 0, sizeof *r);
		r->op.client = (uint32_t)jp_json_i64(o, "client");
		r->op.key = (uint64_t)jp_json_i64(o, "key");
		r->op.f = (uint8_t)fi;
		r->op.outcome = (uint8_t)oi;
		r->op.mismatch = json_is_true(json_object_get(o, "mismatch"));
		r->op.value = jp_json_i64(o, "value");
		r->op.value2 = jp_json_i64(o, "value2");
		r->op.call_ns = jp_json_i64(o, "call_ns");
		r->op.return_ns = jp_json_i64(o, "return_ns");
		json_decref(o);
	}
	free(line);
	fclose(f);
	*count = n;
	if (h == NULL)
		h = calloc(1, sizeof *h);
	return h;
}

/* ------------------------------------------------------------------------ */

/* Text for SVG: &, < and > escaped (notes come from the client library). */
static void jp_xml_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '&')
			fputs("&amp;", f);
		else if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else
			fputc(*s, f);
	}
}

static const char *jp_outcome_colour(const lincheck_op *op)
{
	if (op->outcome == LINCHECK_OK)
		return "#43a047";
	if (op->outcome == LINCHECK_INFO)
		return "#ffb300";
	return op->mismatch ? "#7cb342" : "#e53935";
}

static int jp_timeline(const char *dir, const jp_op *h, size_t n, const jp_nemesis *nm,
		       const jp_verdict *v, uint32_t clients, int64_t end_ns, uint64_t seed)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/timeline.html", dir);
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	const double width = 1800, left = 70, lane = 9, top = 90;
	double scale = (width - left - 10) / (double)(end_ns > 0 ? end_ns : 1);
	uint32_t lanes = clients + 1; /* the last lane: the final reads */
	double height = top + lane * lanes + 40;
	fprintf(f, "<!doctype html><html><head><meta charset=\"utf-8\"><title>vsrjepsen seed %"
		   PRIu64 "</title>\n<style>body{font:13px sans-serif;margin:12px}"
		   "text{font:10px sans-serif}</style></head><body>\n",
		seed);
	fprintf(f, "<h3>vsrjepsen seed %" PRIu64 ": %s, %" PRIu64 " ops (%" PRIu64 " ok, %" PRIu64
		   " fail, %" PRIu64 " info), lost writes %u, digests %s</h3>\n",
		seed, lincheck_verdict_name(v->lin.verdict), v->ops, v->ok, v->fail, v->info,
		v->lost_writes, v->digests_agree ? "agree" : "DIFFER");
	fprintf(f, "<p>One lane per client (the last: final reads). Bars: "
		   "<span style=\"color:#43a047\">ok</span>, "
		   "<span style=\"color:#7cb342\">cas refused (observed)</span>, "
		   "<span style=\"color:#e53935\">fail</span>, "
		   "<span style=\"color:#ffb300\">info (unknown; may apply until the end)</span>. "
		   "Bands: faults; grey strip at the top: no connected majority. "
		   "Hover for details.</p>\n");
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\">\n",
		width, height);
	/* Time axis every second. */
	for (int64_t s = 0; s * 1000000000ll <= end_ns; s++) {
		double x = left + (double)s * 1e9 * scale;
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#eee\"/>"
			   "<text x=\"%.1f\" y=\"%.0f\">%llds</text>\n",
			x, top - 5, x, height - 20, x - 6, height - 8, (long long)s);
	}
	/* No-majority stretches. */
	for (uint32_t i = 0; i < nm->conn_count; i++) {
		if (nm->conn[i].majority)
			continue;
		int64_t a = nm->conn[i].t_ns;
		int64_t b = i + 1 < nm->conn_count ? nm->conn[i + 1].t_ns : end_ns;
		fprintf(f, "<rect x=\"%.1f\" y=\"4\" width=\"%.1f\" height=\"8\" fill=\"#9e9e9e\">"
			   "<title>no connected majority %.3f-%.3f s</title></rect>\n",
			left + (double)a * scale, (double)(b - a) * scale + 1, a / 1e9, b / 1e9);
	}
	/* Faults: bands over every lane, label rows alternating. */
	static const char *const band[] = {"#e3f2fd", "#fce4ec", "#f3e5f5", "#e8f5e9", "#fff3e0"};
	for (uint32_t e = 0; e < nm->event_count; e++) {
		const jp_event *ev = &nm->events[e];
		int64_t b = ev->end_ns ? ev->end_ns : end_ns;
		double x = left + (double)ev->start_ns * scale;
		double w = (double)(b - ev->start_ns) * scale + 1;
		const char *colour = ev->fault < 0 ? "#ff5252" : band[ev->fault % 5];
		fprintf(f, "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\" fill=\"%s\" "
			   "opacity=\"0.8\"><title>%s %.3f-%.3f s</title></rect>"
			   "<text x=\"%.1f\" y=\"%.0f\">%s</text>\n",
			x, 16.0 + (e % 4) * 16, w, height - 36 - (e % 4) * 16, colour, ev->what,
			ev->start_ns / 1e9, b / 1e9, x + 2, 26.0 + (e % 4) * 16, ev->what);
	}
	for (uint32_t c = 0; c < lanes; c++)
		fprintf(f, "<text x=\"2\" y=\"%.1f\">%s %u</text>\n", top + lane * c + lane - 1,
			c == clients ? "final" : "client", c + 1);
	for (size_t i = 0; i < n; i++) {
		const lincheck_op *op = &h[i].op;
		uint32_t c = op->client < clients ? op->client : clients;
		int64_t b = op->outcome == LINCHECK_INFO ? end_ns : op->return_ns;
		double x = left + (double)op->call_ns * scale;
		double w = (double)(b - op->call_ns) * scale;
		if (w < 1)
			w = 1;
		fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.0f\" fill=\"%s\"%s>"
			   "<title>#%zu client %u key %" PRIu64 " %s",
			x, top + lane * c, w, lane - 2, jp_outcome_colour(op),
			op->outcome == LINCHECK_INFO ? " opacity=\"0.35\"" : "", i, op->client + 1,
			op->key, lincheck_f_name(op->f));
		if (op->f == LINCHECK_CAS)
			fprintf(f, " %" PRId64 "-&gt;%" PRId64, op->value, op->value2);
		else if (op->value == LINCHECK_NIL)
			fprintf(f, " nil");
		else
			fprintf(f, " %" PRId64, op->value);
		fprintf(f, " %s%s %.4f-%.4f s ", lincheck_outcome_name(op->outcome),
			op->mismatch ? " (refused)" : "", op->call_ns / 1e9,
			op->outcome == LINCHECK_INFO ? end_ns / 1e9 : op->return_ns / 1e9);
		jp_xml_text(f, h[i].note);
		fprintf(f, "</title></rect>\n");
	}
	if (v->lin.verdict == LINCHECK_NOT_LINEARIZABLE && v->lin.bad_op < n) {
		const lincheck_op *op = &h[v->lin.bad_op].op;
		uint32_t c = op->client < clients ? op->client : clients;
		fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.0f\" fill=\"none\" "
			   "stroke=\"black\" stroke-width=\"2\"><title>the checker stopped here</title>"
			   "</rect>\n",
			left + (double)op->call_ns * scale - 2, top + lane * c - 2,
			(double)(op->return_ns - op->call_ns) * scale + 4, lane + 2);
	}
	fprintf(f, "</svg></body></html>\n");
	return fclose(f) == 0 ? 0 : -1;
}

int jp_report_write(const char *dir, const jp_op *h, size_t n, const jp_nemesis *nm,
		    const jp_verdict *v, uint32_t clients, int64_t end_ns, uint64_t seed)
{
	char path[PATH_MAX + 32];
	int rc = 0;
	snprintf(path, sizeof path, "%s/history.jsonl", dir);
	rc |= jp_history_write(path, h, n);
	snprintf(path, sizeof path, "%s/nemesis.jsonl", dir);
	FILE *f = fopen(path, "w");
	if (f != NULL) {
		for (uint32_t e = 0; e < nm->event_count; e++) {
			const jp_event *ev = &nm->events[e];
			fprintf(f, "{\"fault\":\"%s\",\"what\":",
				ev->fault >= 0 ? jp_fault_names[ev->fault] : "crash");
			jp_json_string(f, ev->what);
			fprintf(f, ",\"start_ns\":%" PRId64 ",\"end_ns\":%" PRId64 "}\n", ev->start_ns,
				ev->end_ns);
		}
		for (uint32_t i = 0; i < nm->conn_count; i++)
			fprintf(f, "{\"majority\":%s,\"t_ns\":%" PRId64 "}\n",
				nm->conn[i].majority ? "true" : "false", nm->conn[i].t_ns);
		rc |= fclose(f) == 0 ? 0 : -1;
	} else {
		rc = -1;
	}
	snprintf(path, sizeof path, "%s/verdict.json", dir);
	f = fopen(path, "w");
	if (f != NULL) {
		fprintf(f, "{\"seed\":%" PRIu64 ",\"valid\":%s,\"linearizable\":\"%s\",", seed,
			v->valid ? "true" : "false", lincheck_verdict_name(v->lin.verdict));
		fprintf(f, "\"checker\":");
		jp_json_string(f, v->lin.why);
		fprintf(f, ",\"keys\":%u,\"ops\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"fail\":%" PRIu64
			   ",\"info\":%" PRIu64 ",\"lost_writes\":%u,\"unread_keys\":%u,"
			   "\"digests_agree\":%s,\"availability\":%.4f,\"majority_ops\":%" PRIu64
			   ",\"duration_s\":%.3f,\"faults\":{",
			v->lin.keys, v->ops, v->ok, v->fail, v->info, v->lost_writes, v->unread_keys,
			v->digests_agree ? "true" : "false", v->availability, v->majority_ops,
			end_ns / 1e9);
		bool first = true;
		for (int k = 0; k < JP_FAULT_COUNT; k++) {
			if (v->fault_count[k] == 0)
				continue;
			fprintf(f, "%s\"%s\":{\"count\":%u,\"longest_gap_s\":%.3f,\"alone\":%u,"
				   "\"longest_gap_alone_s\":%.3f,\"longest_recovery_after_heal_s\":%.3f}",
				first ? "" : ",", jp_fault_names[k], v->fault_count[k], v->gap_ns[k] / 1e9,
				v->alone_count[k], v->gap_alone_ns[k] / 1e9, v->recovery_ns[k] / 1e9);
			first = false;
		}
		fprintf(f, "}}\n");
		rc |= fclose(f) == 0 ? 0 : -1;
	} else {
		rc = -1;
	}
	rc |= jp_timeline(dir, h, n, nm, v, clients, end_ns, seed);
	return rc;
}
