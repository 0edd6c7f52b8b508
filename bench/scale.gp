# bench/scale.gp: the scale plots of docs/performance.md, from
# bench/scale-results.tsv (written by bench/scale.sh; in: that file, dir:
# where the PNGs go, sub: a line saying when and where). Points: the median
# ratio over the rounds; error bars: its interquartile range.
set terminal pngcairo size 900,520 font ",10"
set datafile separator "\t"
set key top left
set grid ytics
set logscale x
set ylabel "cost per operation, ratio (median, IQR)"
set style data yerrorlines

set output dir."/performance-rules.png"
set title "Per-operation cost inside a sandbox against rule count (fanotify + sock\\_addr)\nratio to a 10-rule sandbox measured interleaved\n{/*0.8 ".sub."}"
set xlabel "rules (deny\\_read names, globs, paths and allow\\_net addresses)"
set xrange [7:14000]
plot in using (strcol(1) eq "rules" && strcol(3) eq "open" ? $2 : 1/0):4:5:6 title "open+close, unprotected file" lc rgb "#4a7ab5" pt 7, \
     in using (strcol(1) eq "rules" && strcol(3) eq "prot" ? $2 : 1/0):4:5:6 title "open+close, deny\\_write file read-only (fanotify round trip)" lc rgb "#c0504d" pt 5, \
     in using (strcol(1) eq "rules" && strcol(3) eq "conn" ? $2 : 1/0):4:5:6 title "UDP connect to an allowed loopback address" lc rgb "#6a9a3a" pt 9, \
     1.05 title "target: 1.05" with lines dt 2 lc rgb "gray"

set output dir."/performance-sandboxes.png"
set title "Per-operation cost inside a sandbox against sandbox count (fanotify + sock\\_addr)\nratio to the same operation outside any sandbox, measured interleaved; agent RSS on the right\n{/*0.8 ".sub."}"
set xlabel "sandboxes held by the agent"
set xrange [0.7:1500]
set y2label "agent resident memory (MiB)"
set y2tics
set ytics nomirror
plot in using (strcol(1) eq "sandboxes" && strcol(3) eq "open" ? $2 : 1/0):4:5:6 title "open+close, unprotected file" lc rgb "#4a7ab5" pt 7, \
     in using (strcol(1) eq "sandboxes" && strcol(3) eq "prot" ? $2 : 1/0):4:5:6 title "open+close, deny\\_write file (round trip)" lc rgb "#c0504d" pt 5, \
     in using (strcol(1) eq "sandboxes" && strcol(3) eq "conn" ? $2 : 1/0):4:5:6 title "UDP connect, allowed loopback" lc rgb "#6a9a3a" pt 9, \
     in using (strcol(1) eq "sandboxes" && strcol(3) eq "conn" ? $2 : 1/0):11 axes x1y2 with linespoints title "agent RSS (MiB)" lc rgb "black" dt 3 pt 2
