/* corpus_replay.c - runs the fuzz target over a corpus without libFuzzer (any compiler).
 *
 * Usage: wire_corpus_replay [--any] DIR...
 * Every file goes through LLVMFuzzerTestOneInput (which aborts on a property
 * violation); files named valid-* must also decode successfully, so a
 * format change that silently breaks the corpus fails this test. Linked
 * with each fuzz target (fuzz_decode.c, fuzz_auth.c); --any: a corpus
 * with no valid-* frame (the authentication target's scripts) is fine. */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vsr_wire.h"
#include "wire_testutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Corpus files are small; anything larger is not ours. */
#define REPLAY_FILE_MAX (4u << 20)

static int replay_file(const char *path, const char *name, unsigned *valid)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		perror(path);
		return 1;
	}
	uint8_t *buf = malloc(REPLAY_FILE_MAX);
	if (buf == NULL) {
		fclose(f);
		return 1;
	}
	size_t n = fread(buf, 1, REPLAY_FILE_MAX, f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	int bad = 0;
	if (strncmp(name, "valid-", 6) == 0) {
		vsr_wire_config c;
		wt_config(&c);
		vsr_wire_decoded d;
		vsr_wire_decoded_init(&d);
		char err[200] = "";
		size_t flen = 0;
		int rc = vsr_wire_decode(buf, n, &c, &d, &flen, NULL, err, sizeof(err));
		if (rc != 0 || flen != n) {
			fprintf(stderr, "FAIL %s: a valid-* frame is refused: %s\n", path, err);
			bad = 1;
		} else {
			(*valid)++;
		}
		vsr_wire_decoded_free(&d);
	}
	free(buf);
	return bad;
}

int main(int argc, char **argv)
{
	unsigned files = 0, valid = 0, failed = 0;
	bool any = argc > 1 && strcmp(argv[1], "--any") == 0;
	for (int i = any ? 2 : 1; i < argc; i++) {
		DIR *dir = opendir(argv[i]);
		if (dir == NULL) {
			perror(argv[i]);
			return 1;
		}
		struct dirent *de;
		while ((de = readdir(dir)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
			failed += (unsigned)replay_file(path, de->d_name, &valid);
			files++;
		}
		closedir(dir);
	}
	printf("replayed %u files, %u valid frames decoded\n", files, valid);
	if (files == 0 || (valid == 0 && !any)) {
		fprintf(stderr, "FAIL: empty corpus\n");
		return 1;
	}
	printf("%u passed, %u failed\n", files - failed, failed);
	return failed == 0 ? 0 : 1;
}
