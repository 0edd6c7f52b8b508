package cmdutil

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// ShowFile prints a file for review before it is trusted (`aigate trust`,
// and `sudo aigate run` asking about a project file), with line numbers.
func ShowFile(w io.Writer, name string, data []byte) {
	text := strings.TrimSuffix(string(data), "\n")
	fmt.Fprintf(w, "--- %s\n", name)
	for i, line := range strings.Split(text, "\n") {
		// The file is someone else's: an escape sequence must not hide or
		// rewrite what is shown for review.
		if strings.IndexFunc(line, func(r rune) bool { return unicode.IsControl(r) && r != '\t' }) >= 0 {
			line = strconv.Quote(line) + "   (control characters shown escaped)"
		}
		fmt.Fprintf(w, "%4d  %s\n", i+1, line)
	}
	fmt.Fprintf(w, "---\n")
}
