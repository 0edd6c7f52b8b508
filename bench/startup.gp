# bench/startup.gp: the start-up plot of docs/performance.md, from the
# bwrap rows of bench/startup's summary (in: the rows, out: the PNG, sub: a
# line saying when and where). Bars: median wall time; error bars: IQR.
set terminal pngcairo size 900,520 font ",10"
set output out
set title "run -- true: whole-process start-up and teardown (median, IQR)\n{/*0.8 ".sub."}"
set datafile separator "\t"
set style fill solid 0.6 border -1
set boxwidth 0.6
set logscale y
set ylabel "wall time (ms, log scale)"
set grid ytics
set xtics nomirror rotate by -25
unset key
plot in using 0:2:xtic(1) with boxes lc rgb "#4a7ab5", \
     in using 0:2:3:4 with yerrorbars lc rgb "black" pt -1, \
     in using 0:($2*1.7):(sprintf("%.1f ms", $2)) with labels
