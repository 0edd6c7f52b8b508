# fast-import stream: a first commit of F files in D directories, then C-1
# commits changing K files each; all names, contents and dates follow from
# the numbers, so every machine gets the same repository.
function content(f, v,   s, l) {
	s = ""
	for (l = 0; l < 12; l++)
		s = s sprintf("line %d of file %d, version %d: %08x\n", l, f, v, (f * 2654435761 + v * 40503 + l) % 4294967296)
	return s
}
function path(f) { return sprintf("d%03d/f%05d.txt", f % D, f) }
function commit(c, msg) {
	printf "commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\ndata %d\n%s", 1700000000 + c * 60, length(msg), msg
}
BEGIN {
	commit(1, "initial\n")
	for (f = 0; f < F; f++) { s = content(f, 0); printf "M 644 inline %s\ndata %d\n%s\n", path(f), length(s), s }
	x = 12345
	for (c = 2; c <= C; c++) {
		commit(c, sprintf("change %d\n", c))
		for (k = 0; k < K; k++) {
			x = (x * 1103515245 + 12345) % 2147483648
			f = x % F
			s = content(f, c)
			printf "M 644 inline %s\ndata %d\n%s\n", path(f), length(s), s
		}
	}
}
